"""Append-only JSONL: durable appends, torn last line dropped, bad middle line named."""

from __future__ import annotations

import logging

import pytest
from pydantic import BaseModel

from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.store.jsonl import append_jsonl, read_jsonl, repair_torn_tail


class Row(BaseModel):
    k: int
    text: str = ""


def test_append_and_read(tmp_path):
    path = tmp_path / "sub" / "rows.jsonl"
    for i in range(3):
        append_jsonl(path, Row(k=i, text="a\nb"))
    append_jsonl(path, {"k": 3})
    assert [r.k for r in read_jsonl(path, Row)] == [0, 1, 2, 3]
    assert read_jsonl(path, Row)[0].text == "a\nb"
    assert path.read_text().count("\n") == 4


def test_missing_file_reads_empty(tmp_path):
    assert read_jsonl(tmp_path / "none.jsonl", Row) == []
    assert repair_torn_tail(tmp_path / "none.jsonl") is False


def test_torn_last_line_dropped_with_warning(tmp_path, caplog):
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, Row(k=1))
    append_jsonl(path, Row(k=2))
    good = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"k": 3, "te')
    with caplog.at_level(logging.WARNING):
        assert repair_torn_tail(path) is True
    assert "torn last line" in caplog.text
    assert path.read_bytes() == good
    assert repair_torn_tail(path) is False
    append_jsonl(path, Row(k=4))
    assert [r.k for r in read_jsonl(path, Row)] == [1, 2, 4]


def test_torn_only_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"k": 1')
    assert repair_torn_tail(path) is True
    assert path.read_bytes() == b""


def test_complete_unterminated_line_kept(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"k": 1}\n{"k": 2}')
    assert repair_torn_tail(path) is True
    assert [r.k for r in read_jsonl(path, Row)] == [1, 2]
    assert path.read_bytes().endswith(b"}\n")


def test_malformed_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"k": 1}\n{"k": 2\n{"k": 3}\n')
    assert repair_torn_tail(path) is False  # not a torn tail: it must not be silently dropped
    with pytest.raises(DataError, match=r"rows.jsonl:2: not valid JSON"):
        read_jsonl(path, Row)
    path.write_text('{"k": 1}\n{"k": "x"}\n')
    with pytest.raises(DataError, match=r"rows.jsonl:2: not a valid Row \(k:"):
        read_jsonl(path, Row)
