"""The prefix store: reuse by session or by shared 16-token blocks, LRU eviction by bytes."""

from __future__ import annotations

import torch

from sotopia_pi_lib.llm.engine.kvcache import BLOCK, SessionStore, common_prefix


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([9], [1]) == 0


def kv_of(tokens: int) -> torch.Tensor:
    return torch.zeros(2, 2, 1, tokens, 4)  # 2*2*4*4 bytes = 64 bytes per token


def test_session_lookup_reuses_the_common_prefix_and_leaves_one_token() -> None:
    store = SessionStore(max_bytes=10_000)
    store.put("a", [1, 2, 3, 4], kv_of(4))
    reused, prefix = store.lookup("a", [1, 2, 3, 9, 9])
    assert reused == 3 and prefix is not None and prefix.shape[3] == 3
    reused, prefix = store.lookup("a", [1, 2, 3, 4])  # same prompt: the last token is recomputed
    assert reused == 3
    assert store.lookup("b", [1, 2]) == (0, None)
    assert store.lookup(None, [1, 2]) == (0, None)  # shorter than a block: only found by session


def test_session_store_evicts_least_recently_used_by_bytes() -> None:
    store = SessionStore(max_bytes=64 * 10)
    store.put("a", [1] * 4, kv_of(4))
    store.put("b", [1] * 4, kv_of(4))
    store.lookup("a", [1, 1])  # a is now the most recent
    store.put("c", [1] * 4, kv_of(4))  # 12 tokens > 10: b goes
    assert store.lookup("b", [1, 1]) == (0, None)
    assert store.lookup("a", [1, 1])[0] == 1 and store.lookup("c", [1, 1])[0] == 1
    assert store.bytes == 64 * 8 and store.evictions == 1
    store.put("huge", [1] * 20, kv_of(20))  # larger than the bound: not stored, nothing evicted
    assert len(store) == 2
    store.put("a", [1] * 2, kv_of(2))  # replacing an entry frees its old bytes
    assert store.bytes == 64 * 6


def test_disabled_store_keeps_nothing() -> None:
    store = SessionStore(max_bytes=0)
    store.put("a", [1, 2], kv_of(2))
    assert len(store) == 0


def test_any_entry_sharing_whole_blocks_is_found_without_a_session() -> None:
    store = SessionStore(max_bytes=1 << 20)
    rubric = list(range(100, 100 + 3 * BLOCK + 5))
    store.put("#1", rubric + [1, 2, 3], kv_of(len(rubric) + 3))
    reused, prefix = store.lookup(None, rubric + [7, 8])
    assert reused == len(rubric) and prefix is not None and prefix.shape[3] == len(rubric)
    assert store.lookup("other-session", rubric[: BLOCK - 1] + [5, 5])[0] == 0
    store.put("#2", rubric[: 2 * BLOCK] + [9] * 40, kv_of(2 * BLOCK + 40))
    assert store.lookup(None, rubric + [7])[0] == len(rubric)  # the longer match wins
    store.drop("#1")
    assert store.lookup(None, rubric + [7])[0] == 2 * BLOCK
    store.drop("#2")
    assert store.lookup(None, rubric + [7]) == (0, None) and not store._holders


def test_entries_without_a_session_are_evicted_first() -> None:
    store = SessionStore(max_bytes=64 * 10)
    store.put("agent-1", [1] * 4, kv_of(4))
    store.put("#7", [2] * 4, kv_of(4))
    store.put("agent-2", [3] * 4, kv_of(4))  # over budget: the anonymous entry goes, not agent-1
    assert store.lookup("agent-1", [1, 1])[0] == 1 and store.lookup("#7", [2, 2]) == (0, None)
