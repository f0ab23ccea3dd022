"""Append-only JSONL files that survive crashes.

Each record is one line written with a single write, flushed and fsynced, so after a crash or
Ctrl-C the file holds every finished record plus at most one torn last line. That line is the only
damage a crash can do, so it is dropped with a warning; a bad line anywhere else means the file was
edited or corrupted otherwise, and is an error naming file and line rather than silent data loss.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import DataError
from .files import atomic_write_bytes

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


def to_json_line(obj: BaseModel | dict[str, Any]) -> bytes:
    text = obj.model_dump_json() if isinstance(obj, BaseModel) else json.dumps(obj, ensure_ascii=False)
    if "\n" in text:
        raise ValueError("a JSONL record must serialise to a single line")
    return (text + "\n").encode("utf-8")


def append_jsonl(path: str | Path, obj: BaseModel | dict[str, Any]) -> None:
    """Append one record durably (one write, flush, fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_json_line(obj)
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def repair_torn_tail(path: str | Path) -> bool:
    """Drop an unterminated last line left by a crash mid-write; True if the file was changed.

    A last line without its newline that still parses as JSON was complete (written by another
    tool), so it only gets its newline back.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return False
        start = _last_line_start(f, size)
        f.seek(start)
        tail = f.read()
        try:
            json.loads(tail)
        except ValueError:
            f.truncate(start)
            log.warning(
                "%s: dropped a torn last line (%d bytes) left by an interrupted write", path, len(tail)
            )
        else:
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())
    return True


def _last_line_start(f: Any, size: int, block: int = 1 << 16) -> int:
    """Offset just after the last newline (0 if none), scanning backwards in blocks."""
    pos = size
    while pos > 0:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        i = f.read(step).rfind(b"\n")
        if i >= 0:
            return pos + i + 1
    return 0


def iter_jsonl(path: str | Path, model: type[M]) -> Iterator[tuple[int, M]]:
    """(line number, record) for each non-empty line; a bad line is a DataError naming file and line.

    Call `repair_torn_tail` first when the file may have been cut by a crash.
    """
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, model.model_validate_json(line)
            except ValidationError as e:
                yield _raise_bad_line(path, lineno, model, e)


def _raise_bad_line(path: Path, lineno: int, model: type[BaseModel], e: ValidationError) -> Any:
    if any(err["type"] == "json_invalid" for err in e.errors()):
        raise DataError(f"{path}:{lineno}: not valid JSON; fix or delete this line") from None
    where = "; ".join(f"{'.'.join(map(str, err['loc'])) or '<line>'}: {err['msg']}" for err in e.errors()[:3])
    raise DataError(f"{path}:{lineno}: not a valid {model.__name__} ({where})") from None


def read_jsonl(path: str | Path, model: type[M]) -> list[M]:
    return [record for _, record in iter_jsonl(path, model)]


SUPERSEDED = "superseded"  # sub-folder beside a results file holding the records it no longer wants


def superseded_path(path: str | Path) -> Path:
    path = Path(path)
    return path.parent / SUPERSEDED / path.name


def retain_jsonl(path: str | Path, model: type[M], keep: Callable[[M], bool]) -> int:
    """Keep in `path` only the records `keep` accepts; the others move to `superseded/<name>` beside it.

    Used when settings changed: records made under the old settings have other keys and would
    otherwise sit beside the new ones, and anything reading the whole file would mix them. They are
    moved, not deleted (nothing computed is lost). The moved lines are appended and synced before the
    file is atomically rewritten, so a crash at any point loses no record (at worst one is in both).
    Returns how many records moved.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    kept: list[bytes] = []
    moved: list[bytes] = []
    with open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = model.model_validate_json(line)
        except ValidationError as e:
            _raise_bad_line(path, lineno, model, e)
        (kept if keep(record) else moved).append(line if line.endswith(b"\n") else line + b"\n")
    if moved:
        aside = superseded_path(path)
        aside.parent.mkdir(parents=True, exist_ok=True)
        with open(aside, "ab") as f:
            f.write(b"".join(moved))
            f.flush()
            os.fsync(f.fileno())
        atomic_write_bytes(path, b"".join(kept))
        log.warning("%s: moved %d record(s) made under other settings to %s", path, len(moved), aside)
    return len(moved)
