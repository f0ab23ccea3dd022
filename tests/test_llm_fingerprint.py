"""Content hashes for model identity: remembered by (size, mtime), redone when a file changes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from sotopia_pi_lib.errors import BackendError
from sotopia_pi_lib.llm import fingerprint


@pytest.fixture(autouse=True)
def sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hashes.json"
    monkeypatch.setattr(fingerprint, "sidecar_path", lambda: path)
    return path


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = fingerprint.sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(fingerprint, "sha256_file", counting)
    return calls


def test_file_hash_is_remembered_until_the_file_changes(tmp_path: Path, counted: list[Path]) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"weights v1")
    first = fingerprint.file_sha256(f)
    assert first == hashlib.sha256(b"weights v1").hexdigest()
    assert fingerprint.file_sha256(f) == first and len(counted) == 1
    f.write_bytes(b"weights v2")
    os.utime(f, ns=(1, 1))  # a new mtime even on coarse file systems
    assert fingerprint.file_sha256(f) == hashlib.sha256(b"weights v2").hexdigest()
    assert len(counted) == 2


def test_weights_hash_covers_every_shard_and_needs_one(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"1")
    one = fingerprint.weights_hash(tmp_path)
    (tmp_path / "b.safetensors").write_bytes(b"2")
    assert fingerprint.weights_hash(tmp_path) != one
    with pytest.raises(BackendError, match="no weight files"):
        fingerprint.weights_hash(tmp_path / "missing")


def test_adapter_hash_follows_the_adapter_weights(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text('{"r": 8}')
    (tmp_path / "adapter_model.safetensors").write_bytes(b"lora v1")
    (tmp_path / "README.md").write_text("notes")
    before = fingerprint.adapter_hash(tmp_path)
    (tmp_path / "README.md").write_text("other notes")  # documentation does not change outputs
    assert fingerprint.adapter_hash(tmp_path) == before
    (tmp_path / "adapter_model.safetensors").write_bytes(b"lora v2")
    assert fingerprint.adapter_hash(tmp_path) != before
    with pytest.raises(BackendError, match="adapter folder"):
        fingerprint.adapter_hash(tmp_path / "nowhere")


def test_tokenizer_hash_sees_the_chat_template(tmp_path: Path) -> None:
    assert fingerprint.tokenizer_hash(tmp_path) is None
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    first = fingerprint.tokenizer_hash(tmp_path)
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}!")
    assert fingerprint.tokenizer_hash(tmp_path) not in (None, first)
