"""generate_chained: follow-up requests that depend on earlier answers (an episode's next turn).

The default plays rounds over generate(); the response cache answers hits at once and stores each
fresh answer as it arrives; the usage meter counts every response; the hf backend runs the whole
chain in one continuous batch and must give what one generate() per request gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from sotopia_pi_lib.llm import LLM, LLMRequest, LLMResponse, Message, ModelSpec, SamplingParams
from sotopia_pi_lib.llm.cache import ResponseCache
from sotopia_pi_lib.llm.registry import CachedLLM, build_llm
from sotopia_pi_lib.llm.usage import MeteredLLM


class Echo(LLM):
    """Answers with the length of the last message, so follow-ups built from answers are checkable."""

    spec = ModelSpec(backend="openai", model="echo")

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def identity(self) -> dict[str, Any]:
        return {"backend": "echo"}

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        self.calls.append([r.messages[-1].content for r in requests])
        return [
            LLMResponse(text=str(len(r.messages[-1].content)), prompt_tokens=3, completion_tokens=1)
            for r in requests
        ]


def ask(text: str) -> LLMRequest:
    return LLMRequest(messages=(Message(role="user", content=text),), sampling=SamplingParams(max_tokens=8))


def chain(depth: int) -> tuple[list[tuple[Any, LLMRequest]], Any, list[tuple[str, int, str]]]:
    """Chains 'a', 'bb', 'ccc': each answer is appended to the next prompt, `depth` requests per chain."""
    seen: list[tuple[str, int, str]] = []

    def then(key: tuple[str, int], response: LLMResponse) -> list[tuple[Any, LLMRequest]]:
        name, step = key
        seen.append((name, step, response.text))
        if step + 1 == depth:
            return []
        return [((name, step + 1), ask(f"{name}{response.text}x"))]

    first = [((name, 0), ask(name)) for name in ("a", "bb", "ccc")]
    return first, then, seen


def test_default_plays_rounds_and_hands_every_answer_on() -> None:
    echo = Echo()
    first, then, seen = chain(3)
    echo.generate_chained(first, then)
    assert echo.calls == [["a", "bb", "ccc"], ["a1x", "bb2x", "ccc3x"], ["a3x", "bb4x", "ccc5x"]]
    assert sorted(seen) == sorted(
        [(n, s, t) for n, texts in {"a": "133", "bb": "244", "ccc": "355"}.items() for s, t in enumerate(texts)]
    )


def test_cache_answers_hits_at_once_and_stores_each_fresh_answer(tmp_path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    cached = CachedLLM(Echo(), cache)
    first, then, seen = chain(2)
    cached.generate_chained(first[:1], then)  # chain "a" only
    assert cached.inner.calls == [["a"], ["a1x"]] and [s[2] for s in seen] == ["1", "3"]

    again = CachedLLM(Echo(), cache)
    first, then, seen = chain(2)
    again.generate_chained(first, then)
    # "a" and its follow-up replay from the cache; only "bb" and "ccc" (and theirs) reach the model
    assert again.inner.calls == [["bb", "ccc"], ["bb2x", "ccc3x"]]
    assert sorted(seen) == [("a", 0, "1"), ("a", 1, "3"), ("bb", 0, "2"), ("bb", 1, "4"), ("ccc", 0, "3"), ("ccc", 1, "5")]

    third = CachedLLM(Echo(), cache)
    first, then, seen = chain(2)
    third.generate_chained(first, then)
    assert third.inner.calls == [] and len(seen) == 6  # fully cached: the model is never called


def test_failed_answers_are_not_cached_and_meter_counts_each_response(tmp_path) -> None:
    class Flaky(Echo):
        def generate(self, requests, *, progress=False):
            out = super().generate(requests)
            return [LLMResponse(finish_reason="error", error="boom") if r.messages[-1].content == "bb" else o
                    for r, o in zip(requests, out, strict=True)]  # fmt: skip

    cache = ResponseCache(tmp_path / "c.sqlite")
    metered = MeteredLLM(CachedLLM(Flaky(), cache), role="agent")
    first, then, seen = chain(2)
    metered.generate_chained(first, lambda k, r: then(k, r) if r.ok else [])
    u = metered.usage
    assert (u.calls, u.requests, u.failed, u.prompt_tokens) == (1, 5, 1, 12)  # 3 first + 2 follow-ups
    assert cache.stats().writes == 4  # the failed "bb" is not stored

    metered = MeteredLLM(CachedLLM(Flaky(), cache), role="agent")
    first, then, seen = chain(2)
    metered.generate_chained(first, lambda k, r: then(k, r) if r.ok else [])
    assert (metered.usage.requests, metered.usage.cached) == (5, 4)


@pytest.mark.model
def test_hf_chain_matches_one_generate_per_request(embedded_model_dir) -> None:
    """Greedy, so each answer is a function of its prompt: the chained run (follow-ups joining the
    running batch, prefilled on top of their session's KV) must give what separate calls give."""
    exact = {"dtype": "float32"}  # bf16 rounding may differ between a reused and a recomputed prefix
    llm = build_llm(ModelSpec(backend="hf", model="embedded", options=exact), cache=None)
    schema = {"type": "object", "properties": {"reply": {"type": "string", "maxLength": 40}}, "required": ["reply"]}

    def request(name: str, history: str) -> LLMRequest:
        return LLMRequest(
            messages=(Message(role="user", content=f"You are {name}. Say something new.{history}"),),
            json_schema=schema, sampling=SamplingParams(temperature=0.0, max_tokens=40), session=name,
        )  # fmt: skip

    got: dict[tuple[str, int], LLMResponse] = {}

    def then(key: tuple[str, int], response: LLMResponse) -> list[tuple[Any, LLMRequest]]:
        got[key] = response
        name, step = key
        if step == 2:
            return []
        return [((name, step + 1), request(name, f" Before, you said: {response.parsed['reply']}"))]

    names = ["Ann", "Bo", "Cy", "Dee"]
    llm.generate_chained([((n, 0), request(n, "")) for n in names], then)
    assert len(got) == 12 and all(r.ok and r.parsed is not None for r in got.values())
    fresh = build_llm(ModelSpec(backend="hf", model="embedded", options=exact | {"kv_cache_bytes": 0}), cache=None)
    for (name, step), response in got.items():
        history = "" if step == 0 else f" Before, you said: {got[(name, step - 1)].parsed['reply']}"
        assert fresh.generate([request(name, history)])[0].text == response.text
