"""Per-role accounting of LLM calls: what each role of a stage asked, spent, and got from the cache.

The manifest and each notebook's closing summary read these numbers; counting in one wrapper, on the
responses themselves, keeps the figures the same for every backend.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from .base import LLM, Chain, Prompt, Then, WrappedLLM
from .pricing import find_price, price_table
from .types import LLMRequest, LLMResponse


class RoleUsage(BaseModel):
    role: str
    model: str
    calls: int = 0
    requests: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def line(self) -> str:
        return (f"{self.role} ({self.model}): {self.requests} requests ({self.cached} cached, {self.failed} "
                f"failed), {self.prompt_tokens}+{self.completion_tokens} tokens, ${self.cost_usd:.4f}, "
                f"{self.seconds:.0f} s")


class MeteredLLM(WrappedLLM):
    """Wraps a model (usually a CachedLLM) and counts what passes through, for one role."""

    def __init__(self, inner: LLM, role: str) -> None:
        super().__init__(inner)
        self.usage = RoleUsage(role=role, model=inner.spec.label)
        price = None
        if inner.spec.backend == "openai":
            price = find_price(inner.spec.model, price_table(inner.spec.options.get("prices")))
        self._price = price

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        t0 = time.perf_counter()
        out = self.inner.generate(requests, progress=progress)
        self.usage.calls += 1
        self.usage.seconds += time.perf_counter() - t0
        self._count(out)
        return out

    def _count(self, responses: Sequence[LLMResponse]) -> None:
        u = self.usage
        u.requests += len(responses)
        for r in responses:
            if r.cached:
                u.cached += 1
                u.cached_tokens += r.prompt_tokens + r.completion_tokens
                continue
            u.failed += not r.ok
            u.prompt_tokens += r.prompt_tokens
            u.completion_tokens += r.completion_tokens
            if self._price is not None:
                u.cost_usd += self._price.cost(r.prompt_tokens, r.completion_tokens)

    def generate_chained(self, first: Chain, then: Then, *, progress: bool = False) -> None:
        def counted(key: Any, response: LLMResponse) -> Chain:
            self._count([response])
            return then(key, response)

        t0 = time.perf_counter()
        try:
            self.inner.generate_chained(first, counted, progress=progress)
        finally:
            self.usage.calls += 1
            self.usage.seconds += time.perf_counter() - t0

    def choice_logprobs(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[dict[str, float]]:
        t0 = time.perf_counter()
        out = self.inner.choice_logprobs(prompts, choices)
        self.usage.calls += 1
        self.usage.requests += len(out)
        self.usage.seconds += time.perf_counter() - t0
        return out

