"""A results file of keyed records with its failures beside it: the shape of the episode and rating files.

Each stage that calls a model per unit of work keeps two append-only JSONL files: the finished
records (`<stem>.jsonl`) and the units that failed (`<stem>.failures.jsonl`), so a report can list
the failures and a re-run tries them again. A record is identified by its key; reading drops a
repeated key with a warning (a crash between two writers' appends can leave one), and `retain`
moves records made under other settings aside. Both files are repaired once, on first use, from a
torn last line a crash may have left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel

from .jsonl import append_jsonl, iter_jsonl, read_jsonl, repair_torn_tail, retain_jsonl

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)
F = TypeVar("F", bound=BaseModel)


class RecordFile(Generic[R, F]):
    """Append-only `record` JSONL at `path`, `failure` JSONL at `<stem>.failures.jsonl`, both keyed
    by `key` (a record's and a failure's key are comparable: a failure names the unit it was for)."""

    def __init__(
        self,
        path: str | Path,
        record: type[R],
        failure: type[F],
        key: Callable[[R | F], Hashable],
        what: str,
    ) -> None:
        self.path = Path(path)
        self.failures_path = self.path.with_name(self.path.stem + ".failures.jsonl")
        self._record, self._failure, self._key, self._what = record, failure, key, what
        self._repaired = False

    def _ensure_repaired(self) -> None:
        if not self._repaired:
            repair_torn_tail(self.path)
            repair_torn_tail(self.failures_path)
            self._repaired = True

    def __iter__(self) -> Iterator[R]:
        """The records in the order they were written, a repeated key dropped with a warning."""
        self._ensure_repaired()
        seen: set[Hashable] = set()
        for lineno, record in iter_jsonl(self.path, self._record):
            key = self._key(record)
            if key in seen:
                log.warning("%s:%d: duplicate %s %s ignored", self.path, lineno, self._what, key)
                continue
            seen.add(key)
            yield record

    def records(self) -> list[R]:
        """Every record, in the order they were written (duplicates dropped with a warning)."""
        return list(self)

    def keys(self) -> set[Hashable]:
        return {self._key(r) for r in self}

    def __len__(self) -> int:
        return len(self.keys())

    def append(self, record: R) -> None:
        self._ensure_repaired()
        append_jsonl(self.path, record)

    def extend(self, records: Iterable[R]) -> int:
        """Append the records whose key is not stored yet; returns how many were written."""
        done = self.keys()
        written = 0
        for record in records:
            key = self._key(record)
            if key not in done:
                self.append(record)
                done.add(key)
                written += 1
        return written

    def append_failure(self, failure: F) -> None:
        self._ensure_repaired()
        append_jsonl(self.failures_path, failure)

    def extend_failures(self, failures: Iterable[F]) -> None:
        for failure in failures:
            self.append_failure(failure)

    def failures(self) -> list[F]:
        """Every failure on record (a later run may have succeeded: compare with keys())."""
        self._ensure_repaired()
        return read_jsonl(self.failures_path, self._failure)

    def retain(self, keys: set[Hashable]) -> int:
        """Keep only records (and failures) with these keys; the rest, made under other settings, move
        to `superseded/` (see store.jsonl.retain_jsonl). Returns how many records moved."""
        self._ensure_repaired()
        retain_jsonl(self.failures_path, self._failure, lambda f: self._key(f) in keys)
        return retain_jsonl(self.path, self._record, lambda r: self._key(r) in keys)
