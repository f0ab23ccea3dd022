"""ResponseCache: keys, round trips, corrupt entries, stats, concurrent writers, no secrets on disk."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sotopia_pi_lib.errors import BackendError
from sotopia_pi_lib.llm.cache import CacheStats, ResponseCache, choice_key, model_hash, request_key
from sotopia_pi_lib.llm.types import LLMRequest, LLMResponse, Message, SamplingParams

IDENTITY = {
    "backend": "hf",
    "model": "smollm2",
    "weights_sha256": "ab12",
    "adapter_sha256": None,
    "dtype": "f32",
}
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
REQUEST = LLMRequest(
    messages=(Message(role="system", content="Be brief."), Message(role="user", content="Say hi.")),
    json_schema=SCHEMA,
    sampling=SamplingParams(temperature=1.0, top_p=0.9, max_tokens=32),
    seed=7,
    sample_index=0,
)


def key(request: LLMRequest = REQUEST, identity: dict | None = None) -> str:
    return request_key(model_hash(identity or IDENTITY), request)


def response(i: int = 0, **kw) -> LLMResponse:
    fields = {"text": f'{{"a": {i}}}', "parsed": {"a": i}, "prompt_tokens": 10 + i, "completion_tokens": 5}
    return LLMResponse(**(fields | {"latency_s": 0.25} | kw))


def test_key_is_stable_across_objects_and_processes():
    copy = LLMRequest.model_validate_json(REQUEST.model_dump_json())
    assert key(copy) == key() and len(key()) == 64
    assert key(identity=dict(reversed(IDENTITY.items()))) == key()  # identity key order is irrelevant
    code = "from tests.test_llm_cache import key; print(key())"  # a fresh interpreter with another hash seed must agree (no dependence on set/dict order)
    env = os.environ | {"PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == key()


@pytest.mark.parametrize(
    "change",
    [
        {"messages": (Message(role="user", content="Say hi."),)},
        {"messages": (Message(role="system", content="Be brief."), Message(role="user", content="Say hi!"))},
        {"messages": (Message(role="user", content="Be brief."), Message(role="user", content="Say hi."))},
        {"json_schema": None},
        {"json_schema": SCHEMA | {"required": []}},
        {"sampling": SamplingParams(temperature=0.0, top_p=0.9, max_tokens=32)},
        {"sampling": SamplingParams(temperature=1.0, top_p=1.0, max_tokens=32)},
        {"sampling": SamplingParams(temperature=1.0, top_p=0.9, max_tokens=33)},
        {"seed": 8},
        {"sample_index": 1},
    ],
)
def test_every_request_field_changes_the_key(change):
    assert key(REQUEST.model_copy(update=change)) != key()


@pytest.mark.parametrize(
    "change",
    [{"backend": "vllm"}, {"model": "other"}, {"weights_sha256": "ab13"}, {"adapter_sha256": "cd34"},
     {"dtype": "bf16"}, {"load_in_4bit": True}],
)  # fmt: skip
def test_every_identity_field_changes_the_key(change):
    assert key(identity=IDENTITY | change) != key()


def test_session_and_api_keys_do_not_change_the_key(monkeypatch):
    assert key(REQUEST.model_copy(update={"session": "episode-3/agent-1"})) == key()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    assert key(identity=IDENTITY | {"api_key": "sk-other-secret"}) == key()
    with_secret = IDENTITY | {"base_url": "http://u:sk-test-0123456789@host/v1"}
    assert key(identity=with_secret) == key(identity=IDENTITY | {"base_url": "<redacted>"})


def test_choice_key_depends_on_prompt_choices_and_model():
    prompt = REQUEST.messages
    base = choice_key(model_hash(IDENTITY), prompt, ["A", "B", "C", "D"])
    assert choice_key(model_hash(IDENTITY), prompt, ["A", "B", "C"]) != base
    assert choice_key(model_hash(IDENTITY), prompt[1:], ["A", "B", "C", "D"]) != base
    assert choice_key(model_hash(IDENTITY | {"adapter_sha256": "x"}), prompt, ["A", "B", "C", "D"]) != base
    assert key() != base


def test_round_trip_and_stats(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert cache.get(key()) is None
    assert cache.put(key(), IDENTITY, response(3))
    hit = cache.get(key())
    assert hit == response(3).model_copy(update={"cached": True})
    stats = cache.stats()
    assert isinstance(stats, CacheStats)
    assert (stats.hits, stats.misses, stats.writes, stats.corrupt) == (1, 1, 1, 0)
    assert (stats.saved_prompt_tokens, stats.saved_completion_tokens, stats.saved_tokens) == (13, 5, 18)
    reopened = ResponseCache(tmp_path / "c.sqlite")
    assert reopened.get(key()) == hit and reopened.stats().hits == 1  # stats are per cache object
    assert reopened._connect().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failed_responses_are_not_cached(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    failed = [response(0, error="HTTP 500", finish_reason="error"), response(1, finish_reason="error")]
    assert cache.put_many(IDENTITY, [("k0", failed[0]), ("k1", failed[1]), ("k2", response(2))]) == 1
    assert cache.get_many(["k0", "k1", "k2"])[:2] == [None, None]
    assert cache.count() == 1


@pytest.mark.parametrize(
    "garbage",
    ["{not json", "[1, 2]", '{"text": "x"}', response(1, finish_reason="error").model_dump_json(),
     response(1).model_dump_json()[:-1] + ', "extra": 1}'],
)  # fmt: skip
def test_corrupt_entry_is_ignored_counted_and_overwritten(tmp_path, garbage):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put(key(), IDENTITY, response(1))
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        conn.execute("UPDATE responses SET value = ? WHERE key = ?", (garbage, key()))
    assert cache.get(key()) is None
    assert cache.stats().corrupt == 1 and cache.stats().misses == 1
    cache.put(key(), IDENTITY, response(2))
    assert cache.get(key()).parsed == {"a": 2}


def test_corrupt_logprobs_are_ignored(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put_logprobs_many(IDENTITY, [("a", {"A": -0.1, "B": -2.0}), ("b", {"A": -1.0})])
    assert cache.get_logprobs_many(["a", "b", "c"], ["A", "B"]) == [{"A": -0.1, "B": -2.0}, None, None]
    assert (cache.stats().hits, cache.stats().misses, cache.stats().corrupt) == (1, 2, 1)


def test_count_and_clear_per_model(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    other = IDENTITY | {"adapter_sha256": "ff"}
    cache.put_many(IDENTITY, [(f"k{i}", response(i)) for i in range(3)])
    cache.put_many(other, [(f"o{i}", response(i)) for i in range(2)])
    assert (cache.count(IDENTITY), cache.count(other), cache.count()) == (3, 2, 5)
    assert sorted(m["entries"] for m in cache.models()) == [2, 3]
    assert cache.clear(other) == 2
    assert (cache.count(other), cache.count()) == (0, 3)
    assert cache.clear() == 3 and cache.count() == 0


def write_entries(path: str, writer: int, n: int) -> None:
    """One concurrent writer: single puts and small batches, interleaved with reads."""
    cache = ResponseCache(path, timeout_s=120)
    identity = IDENTITY | {"writer": writer % 2}
    for i in range(0, n, 5):
        cache.put(f"w{writer}-{i}", identity, response(i, text=f"{writer}:{i}"))
        cache.put_many(
            identity, [(f"w{writer}-{j}", response(j, text=f"{writer}:{j}")) for j in range(i + 1, i + 5)]
        )
        cache.put("shared", identity, response(0, text="same for all"))
        assert cache.get(f"w{writer}-{i}").text == f"{writer}:{i}"
    cache.close()


def check_all_entries(path: Path, writers: int, n: int) -> None:
    cache = ResponseCache(path)
    keys = [f"w{w}-{i}" for w in range(writers) for i in range(n)]
    got = cache.get_many(keys)
    assert [r.text if r else None for r in got] == [k[1:].replace("-", ":") for k in keys]
    assert cache.count() == writers * n + 1 and cache.stats().corrupt == 0
    assert cache.get("shared").text == "same for all"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_concurrent_threads_lose_nothing(tmp_path):
    path = tmp_path / "c.sqlite"
    threads = [threading.Thread(target=write_entries, args=(str(path), w, 60)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check_all_entries(path, 8, 60)


def test_threads_sharing_one_cache_object(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")

    def work(w: int) -> None:
        cache.put_many(IDENTITY, [(f"w{w}-{i}", response(i, text=f"{w}:{i}")) for i in range(40)])

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.put("shared", IDENTITY, response(0, text="same for all"))
    assert cache.stats().writes == 6 * 40 + 1
    check_all_entries(tmp_path / "c.sqlite", 6, 40)


def test_concurrent_processes_lose_nothing(tmp_path):
    path = tmp_path / "c.sqlite"
    ctx = multiprocessing.get_context("spawn")  # independent interpreters, nothing inherited
    procs = [ctx.Process(target=write_entries, args=(str(path), w, 100)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4
    check_all_entries(path, 4, 100)


def test_forked_child_opens_its_own_connection(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    cache.put("parent", IDENTITY, response(1))
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=lambda: cache.put("child", IDENTITY, response(2)))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert [r.parsed for r in cache.get_many(["parent", "child"])] == [{"a": 1}, {"a": 2}]


def test_no_api_key_reaches_the_file(tmp_path, monkeypatch):
    secret = "sk-fake-4f1c2b9e8d7a6b5c"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    cache = ResponseCache(tmp_path / "c.sqlite")
    identity = IDENTITY | {"api_key": secret, "headers": {"Authorization": f"Bearer {secret}"},
                           "base_url": f"https://user:{secret}@api.example.com/v1"}  # fmt: skip
    cache.put(key(identity=identity), identity, response(1))
    assert cache.models()[0]["identity"]["base_url"] == "<redacted>"
    cache.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"smollm2" in on_disk  # the identity is stored in clear...
    assert secret.encode() not in on_disk  # ...but never the key


def test_a_file_that_is_not_a_database_is_named(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(BackendError, match=f"response cache {path}: file is not a database"):
        ResponseCache(path).get(key())
