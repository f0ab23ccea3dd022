"""The prefix store of the hf backend: KV caches kept across calls, found by session or by prefix.

The simulation asks each agent again every turn with a prompt that extends the last one, and
re-reading it would cost a full prefill of the whole history every turn (bench/llm_throughput.py
times a second call with and without the reuse). So the KV of every call (prompt and
reply) is kept, and a later prompt prefills only what follows its longest common token prefix with a
kept one: the same session's last call (the `session` hint), or any call sharing whole 16-token
blocks with it (found through a hash chain over blocks, as vLLM's automatic prefix caching does) --
the judge's rubric, a shared system prompt, both agents' common scenario text. A prompt's KV is kept
as soon as it is prefilled, so requests admitted later in the same batch reuse it too. Entries are
evicted least-recently-used by bytes, entries without a session first.

Keys and values depend on the weights, so a model with LoRA adapters keeps one namespace per adapter
(the adapter's name; "" for the base): a session and a block chain are found only in their own.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch

KV = torch.Tensor  # [layers, 2, heads, tokens, head_dim] for one sequence
BLOCK = 16
ANONYMOUS = "#"  # key prefix of entries of requests without a session


@dataclass
class SessionEntry:
    ids: list[int]  # the tokens whose keys and values `kv` holds
    kv: KV
    blocks: list[int] = field(default_factory=list)  # hash chain of the whole blocks of ids

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()


def uninitialised(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A KV buffer's memory as it comes (zeroing would be a pass over all of it): callers
    write or zero every column attention can read. Tests make it NaN to check they do."""
    return torch.empty(shape, dtype=dtype, device=device)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = torch.tensor(a[:n]) != torch.tensor(b[:n])
    return int(diff.int().argmax()) if bool(diff.any()) else n


def block_hashes(ids: list[int], namespace: str = "") -> list[int]:
    """h_k = hash(h_{k-1}, block k), h_0 from the namespace: equal hashes mean (barring collisions)
    equal prefixes computed by the same weights."""
    out, h = [], hash(namespace) if namespace else 0
    for k in range(len(ids) // BLOCK):
        h = hash((h, tuple(ids[k * BLOCK : (k + 1) * BLOCK])))
        out.append(h)
    return out


def session_key(session: str | None, namespace: str = "") -> str | None:
    """The store key of a session's entry in a namespace (the base's keys are the sessions)."""
    return session if session is None or not namespace else f"{session}@{namespace}"


class SessionStore:
    """LRU map key (a session, or an internal id) -> SessionEntry, bounded by `max_bytes` (0: off)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, SessionEntry] = OrderedDict()
        self._holders: dict[int, dict[str, None]] = {}  # block hash -> keys of entries holding it
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, session: str | None, prompt: list[int], namespace: str = "") -> tuple[int, KV | None]:
        """(reusable prefix length, that prefix's KV view). At least one prompt token is always left to
        compute, since its logits are needed."""
        best, key = 0, None
        session = session_key(session, namespace)
        if session is not None and session in self._entries:
            best, key = common_prefix(self._entries[session].ids, prompt), session
        hashes = block_hashes(prompt, namespace)
        for k in range(len(hashes) - 1, -1, -1):
            holders = self._holders.get(hashes[k])
            if holders:
                if (k + 1) * BLOCK > best:
                    other = next(reversed(holders))
                    n = common_prefix(self._entries[other].ids, prompt)
                    best, key = (n, other) if n > best else (best, key)
                break
        reuse = min(best, len(prompt) - 1)
        if key is None or reuse <= 0:
            return 0, None
        self._entries.move_to_end(key)
        return reuse, self._entries[key].kv[:, :, :, :reuse]

    def put(self, key: str, ids: list[int], kv: KV, namespace: str = "") -> None:
        """Keep `kv` under `key` (a session_key, or an ANONYMOUS one)."""
        if self.max_bytes <= 0:
            return
        self.drop(key)
        entry = SessionEntry(ids, kv, block_hashes(ids, namespace))
        if entry.nbytes > self.max_bytes:
            return
        self._entries[key] = entry
        for h in entry.blocks:
            self._holders.setdefault(h, {})[key] = None
        self.bytes += entry.nbytes
        while self.bytes > self.max_bytes:
            self.drop(self._victim())
            self.evictions += 1

    def _victim(self) -> str:
        """The least recently used entry without a session, else the least recently used one: a
        session says it will be asked again, and agents asked in turn would otherwise evict each
        other cyclically."""
        return next((k for k in self._entries if k.startswith(ANONYMOUS)), next(iter(self._entries)))

    def drop(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is None:
            return
        self.bytes -= old.nbytes
        for h in old.blocks:
            holders = self._holders.get(h)
            if holders is not None:
                holders.pop(key, None)
                if not holders:
                    del self._holders[h]

    def clear(self) -> None:
        self._entries.clear()
        self._holders.clear()
        self.bytes = 0
