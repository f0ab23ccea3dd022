"""Content hashes of model weights, tokenizer files and LoRA adapters, for the response cache key.

A path names where weights are, not what they are: a retrained adapter saved over the old folder must
not replay the old answers. Hashing 500 MB of safetensors takes a second or two, so each file's hash is
remembered in a small sidecar keyed by (size, mtime); after the first time a fingerprint costs a stat.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from ..errors import BackendError
from ..paths import project_root
from ..store.files import atomic_write_text, sha256_file

WEIGHT_PATTERNS = ("*.safetensors",)
FALLBACK_WEIGHT_PATTERNS = ("*.bin", "*.pt", "*.gguf")
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
    "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt", "generation_config.json",
)  # fmt: skip
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
_lock = threading.Lock()


def sidecar_path() -> Path:
    return project_root() / "cache" / "file_hashes.json"


def _load_sidecar(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def file_sha256(path: Path, sidecar: Path | None = None) -> str:
    """sha256 of a file, remembered by (size, mtime_ns); a changed file is re-hashed."""
    sidecar = sidecar or sidecar_path()
    path = path.resolve()
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    with _lock:
        known = _load_sidecar(sidecar).get(str(path))
    if isinstance(known, dict) and all(known.get(k) == v for k, v in stamp.items()) and "sha256" in known:
        return str(known["sha256"])
    digest = sha256_file(path)
    with _lock:  # a concurrent writer may lose an entry; it is recomputed next time, never wrong
        table = {k: v for k, v in _load_sidecar(sidecar).items() if os.path.exists(k)}  # forget deleted files
        table[str(path)] = {**stamp, "sha256": digest}
        with contextlib.suppress(OSError):  # a read-only checkout just re-hashes next time
            atomic_write_text(sidecar, json.dumps(table, indent=0, sort_keys=True))
    return digest


def combine(named_hashes: Iterable[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for name, digest in sorted(named_hashes):
        h.update(f"{name}:{digest}\n".encode())
    return h.hexdigest()


def files_hash(folder: Path, names: Iterable[str] = (), patterns: Iterable[str] = ()) -> str | None:
    """Combined hash of the named files and the files matching the patterns in `folder` (None if none)."""
    files = {folder / n for n in names if (folder / n).is_file()}
    for pattern in patterns:
        files.update(p for p in folder.glob(pattern) if p.is_file())
    if not files:
        return None
    return combine((p.name, file_sha256(p)) for p in files)


def weights_hash(folder: Path) -> str:
    """Hash of a local model folder's weight files (safetensors, else .bin/.pt/.gguf)."""
    digest = files_hash(folder, patterns=WEIGHT_PATTERNS) or files_hash(
        folder, patterns=FALLBACK_WEIGHT_PATTERNS
    )
    if digest is None:
        raise BackendError(f"no weight files (*.safetensors, *.bin) in model folder {folder}")
    return digest


def tokenizer_hash(folder: Path) -> str | None:
    """The tokenizer and chat template decide the prompt tokens, so they belong to the identity."""
    return files_hash(folder, names=TOKENIZER_FILES)


def adapter_hash(folder: Path) -> str:
    digest = files_hash(folder, names=ADAPTER_FILES)
    if digest is None:
        raise BackendError(f"adapter folder {folder} has no {' or '.join(ADAPTER_FILES[1:])}")
    return digest


def hub_weights_hash(repo_id: str) -> tuple[str, str | None]:
    """(weights hash, tokenizer hash) of a hub model: from the local HF cache when it is there, else from
    the hub's file metadata (the LFS sha256 of each safetensors file is its content hash)."""
    local = local_hub_snapshot(repo_id)
    if local is not None:
        return weights_hash(local), tokenizer_hash(local)
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo_id, files_metadata=True)
    except Exception as e:  # noqa: BLE001 -- offline or unknown repo: say which model
        raise BackendError(
            f"cannot fingerprint hub model {repo_id!r} (not cached locally, hub says: {e})"
        ) from e
    weights = [
        (s.rfilename, s.lfs.sha256)
        for s in info.siblings or []
        if s.lfs and s.rfilename.endswith(".safetensors")
    ]
    if not weights:
        raise BackendError(f"hub model {repo_id!r} lists no safetensors files to fingerprint")
    return combine(weights), info.sha


def local_hub_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 -- not in the cache
        return None
    return path if any(path.glob("*.safetensors")) else None


def is_local_model(name: str) -> bool:
    return Path(os.path.expanduser(name)).is_dir()
