"""Files on disk: atomic writes, checksums, append-only JSONL (used by every stage)."""

from .files import atomic_write_bytes, atomic_write_text, sha256_file

__all__ = ["atomic_write_bytes", "atomic_write_text", "sha256_file"]
