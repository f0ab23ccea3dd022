"""A persistent response cache (one SQLite file) and the LLM wrapper that consults it.

Re-running a notebook replays every answer from here without loading a model, which is what makes
results reproducible and re-runs nearly free. The key is a hash of everything that determines an
output (the model's identity, messages, schema, sampling, seed, sample index), never of hints such as
`session`, and never of secrets. SQLite in WAL mode with a busy timeout lets threads and processes
(parallel notebooks, the server) share one file; each thread of each process gets its own connection.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, computed_field

from ..errors import BackendError
from ..paths import project_root
from ..redact import is_secret_field, scrub_text
from .types import LLMRequest, LLMResponse, Message

CACHE_FORMAT = 1  # bump when the key or the stored value changes meaning
Kind = Literal["generate", "choice_logprobs"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS responses_model ON responses(model);
CREATE TABLE IF NOT EXISTS models (model TEXT PRIMARY KEY, identity TEXT NOT NULL) WITHOUT ROWID;
"""


def default_cache_path() -> Path:
    """<project root>/cache/responses.sqlite, or the file `SOTOPIA_PI_CACHE` names (a shared cache, or a
    fresh one for a cold timing)."""
    env = os.environ.get("SOTOPIA_PI_CACHE")
    return Path(env).resolve() if env else project_root() / "cache" / "responses.sqlite"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def redact_identity(identity: Any) -> Any:
    """Drop secret-named fields and mask any secret a value holds (see `sotopia_pi_lib.redact`).

    Backends should never put a key in identity(); this is the cache's own guard, because the
    identity is stored in clear in the file so that `count`/`clear` can show what a model was.
    A value is left exactly as it is unless it holds a secret, so identities (and keys) stay stable.
    """

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items() if not is_secret_field(str(k))}
        if isinstance(node, list | tuple):
            return [walk(v) for v in node]
        if isinstance(node, Path):
            node = str(node)
        if isinstance(node, str) and scrub_text(node) != node:
            return "<redacted>"
        return node

    return walk(identity)


def model_hash(identity: dict[str, Any]) -> str:
    return _sha256(_canonical(redact_identity(identity)))


def request_key(model: str, request: LLMRequest) -> str:
    """Cache key of one generation by the model whose model_hash() is `model`. Every request field but
    `session` counts, so a field added to LLMRequest later is in the key unless excluded here on purpose."""
    fields = request.model_dump(mode="json", exclude={"session"})
    return _sha256(_canonical({"v": CACHE_FORMAT, "kind": "generate", "model": model, **fields}))


def choice_key(model: str, prompt: Sequence[Message] | str, choices: Sequence[str]) -> str:
    payload = {
        "v": CACHE_FORMAT,
        "kind": "choice_logprobs",
        "model": model,
        "choices": list(choices),
    }
    if isinstance(prompt, str):  # plain text, no chat template: a different key from any chat prompt
        payload["text"] = prompt
    else:
        payload["messages"] = [Message.model_validate(m).model_dump(mode="json") for m in prompt]
    return _sha256(_canonical(payload))


def _model_filter(identity: dict[str, Any] | None) -> tuple[str, tuple[str, ...]]:
    return ("", ()) if identity is None else (" WHERE model = ?", (model_hash(identity),))


def _named_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn SQLite failures (a locked or unreadable file) into an error naming the file."""

    @wraps(method)
    def wrapper(self: ResponseCache, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise BackendError(f"response cache {self.path}: {e} (delete the file to start afresh)") from e

    return wrapper


class StoredResponse(BaseModel):
    """What a cache entry holds; anything else in the file is a corrupt entry."""

    model_config = ConfigDict(extra="forbid")

    text: str
    parsed: Any = None
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


class CacheStats(BaseModel):
    """Counts for this process since the cache was opened (hits and misses count requests)."""

    path: str
    hits: int = 0
    misses: int = 0
    writes: int = 0
    corrupt: int = 0
    saved_prompt_tokens: int = 0
    saved_completion_tokens: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def saved_tokens(self) -> int:
        return self.saved_prompt_tokens + self.saved_completion_tokens


class ResponseCache:
    """SQLite-backed store of successful responses and choice log-probabilities."""

    def __init__(self, path: str | Path | None = None, *, timeout_s: float = 60.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._stats = CacheStats(path=str(self.path))
        self._conns: list[tuple[int, sqlite3.Connection]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connect()

    @_named_errors
    def _connect(self) -> sqlite3.Connection:
        """This thread's connection; a forked child never reuses its parent's."""
        held = getattr(self._local, "conn", None)
        if held is not None and held[0] == os.getpid():
            return held[1]
        conn = sqlite3.connect(
            self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        self._local.conn = (os.getpid(), conn)
        with self._lock:
            self._conns.append((os.getpid(), conn))
        return conn

    # -- raw access -------------------------------------------------------------------------------

    @_named_errors
    def _get_raw(self, keys: Sequence[str]) -> dict[str, str]:
        conn, found = self._connect(), {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 500):
            chunk = unique[i : i + 500]
            rows = conn.execute(
                f"SELECT key, value FROM responses WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update(dict(rows.fetchall()))
        return found

    @_named_errors
    def _put_raw(self, identity: dict[str, Any], kind: Kind, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return
        model, now, conn = model_hash(identity), time.time(), self._connect()
        conn.execute("BEGIN IMMEDIATE")  # take the write lock up front: no deadlock on upgrade
        try:
            conn.execute(
                "INSERT OR IGNORE INTO models VALUES (?, ?)", (model, _canonical(redact_identity(identity)))
            )
            conn.executemany(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                [(key, model, kind, value, now) for key, value in items],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._count(writes=len(items))

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + delta)

    # -- responses --------------------------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> list[LLMResponse | None]:
        """Responses in key order (None for a miss); hits come back with cached=True."""
        raw = self._get_raw(keys)
        out: list[LLMResponse | None] = []
        for key in keys:
            stored = self._decode(raw.get(key))
            out.append(None if stored is None else LLMResponse(**stored.model_dump(), cached=True))
        hits = [r for r in out if r is not None]
        self._count(
            hits=len(hits),
            misses=len(out) - len(hits),
            saved_prompt_tokens=sum(r.prompt_tokens for r in hits),
            saved_completion_tokens=sum(r.completion_tokens for r in hits),
        )
        return out

    def get(self, key: str) -> LLMResponse | None:
        return self.get_many([key])[0]

    def put_many(self, identity: dict[str, Any], items: Sequence[tuple[str, LLMResponse]]) -> int:
        """Store the successful responses among `items`; failed ones are never cached. Returns how many."""
        rows = [
            (key, StoredResponse(**r.model_dump(include=set(StoredResponse.model_fields))).model_dump_json())
            for key, r in items
            if r.ok and r.finish_reason != "error"
        ]
        self._put_raw(identity, "generate", rows)
        return len(rows)

    def put(self, key: str, identity: dict[str, Any], response: LLMResponse) -> bool:
        return self.put_many(identity, [(key, response)]) == 1

    # -- choice log-probabilities -----------------------------------------------------------------

    def get_logprobs_many(self, keys: Sequence[str], choices: Sequence[str]) -> list[dict[str, float] | None]:
        raw = self._get_raw(keys)
        out = [self._decode_logprobs(raw.get(key), choices) for key in keys]
        hits = sum(v is not None for v in out)
        self._count(hits=hits, misses=len(out) - hits)
        return out

    def put_logprobs_many(
        self, identity: dict[str, Any], items: Sequence[tuple[str, dict[str, float]]]
    ) -> None:
        self._put_raw(identity, "choice_logprobs", [(key, _canonical(v)) for key, v in items])

    # -- decoding ---------------------------------------------------------------------------------

    def _decode(self, value: str | None) -> StoredResponse | None:
        if value is None:
            return None
        try:
            return StoredResponse.model_validate_json(value)
        except ValidationError:
            self._count(corrupt=1)
            return None

    def _decode_logprobs(self, value: str | None, choices: Sequence[str]) -> dict[str, float] | None:
        if value is None:
            return None
        try:
            data = json.loads(value)
            if isinstance(data, dict) and set(data) == set(choices):
                return {c: float(data[c]) for c in choices}
        except (ValueError, TypeError):
            pass
        self._count(corrupt=1)
        return None

    # -- housekeeping -----------------------------------------------------------------------------

    @_named_errors
    def count(self, identity: dict[str, Any] | None = None) -> int:
        """Entries stored, for one model (its identity()) or for all."""
        where, args = _model_filter(identity)
        return self._connect().execute(f"SELECT COUNT(*) FROM responses{where}", args).fetchone()[0]

    @_named_errors
    def clear(self, identity: dict[str, Any] | None = None) -> int:
        """Delete the entries of one model (or all); returns how many were deleted."""
        where, args = _model_filter(identity)
        return self._connect().execute(f"DELETE FROM responses{where}", args).rowcount

    @_named_errors
    def models(self) -> list[dict[str, Any]]:
        """The (redacted) identity of every model with entries, with its entry count."""
        rows = self._connect().execute(
            "SELECT m.identity, COUNT(*) FROM responses r JOIN models m ON m.model = r.model GROUP BY r.model"
        )
        return [{"identity": json.loads(identity), "entries": n} for identity, n in rows.fetchall()]

    def stats(self) -> CacheStats:
        with self._lock:
            return self._stats.model_copy()

    def close(self) -> None:
        """Close this process's connections (a forked child leaves its parent's alone)."""
        with self._lock:
            mine = [c for pid, c in self._conns if pid == os.getpid()]
            self._conns = [(pid, c) for pid, c in self._conns if pid != os.getpid()]
        for conn in mine:
            conn.close()
        self._local = threading.local()
