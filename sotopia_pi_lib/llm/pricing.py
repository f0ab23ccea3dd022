"""USD prices per 1M tokens, so a run can report what its API calls cost.

Defaults are OpenAI's standard-tier list prices from https://platform.openai.com/docs/pricing
(gpt-4, gpt-4-turbo and gpt-3.5-turbo in its legacy-models table), as listed 2024-10 through 2025;
the batch API, cached input and fine-tuned models cost differently. Prices change: override them per
spec with `options: {prices: {MODEL: {input_per_1m: X, output_per_1m: Y}}}`.
A model without a price (a local server, vLLM) costs nothing and is counted as unpriced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError


class Price(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_1m: float = Field(ge=0.0, description="USD per 1M prompt tokens")
    output_per_1m: float = Field(ge=0.0, description="USD per 1M completion tokens")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1_000_000


PRICES_CHECKED = "2025-03"
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4": Price(input_per_1m=30.0, output_per_1m=60.0),  # 8k context (gpt-4-0613), the paper's judge
    "gpt-4-32k": Price(input_per_1m=60.0, output_per_1m=120.0),
    "gpt-4-turbo": Price(input_per_1m=10.0, output_per_1m=30.0),
    "gpt-4-1106-preview": Price(input_per_1m=10.0, output_per_1m=30.0),  # turbo, despite the gpt-4 prefix
    "gpt-4-0125-preview": Price(input_per_1m=10.0, output_per_1m=30.0),
    "gpt-3.5-turbo": Price(input_per_1m=0.5, output_per_1m=1.5),  # gpt-3.5-turbo-0125
    "gpt-4o": Price(input_per_1m=2.5, output_per_1m=10.0),  # gpt-4o-2024-08-06
    "gpt-4o-mini": Price(input_per_1m=0.15, output_per_1m=0.6),
}


class UsageSummary(BaseModel):
    """What a model's calls used and cost; `since` gives the share of one generate() call."""

    requests: int = 0
    failures: int = 0
    api_calls: int = 0
    retries: int = 0
    repairs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = Field(True, description="False when the model has no price (its cost counts as 0)")

    def record(self, prompt_tokens: int, completion_tokens: int, price: Price | None) -> None:
        self.api_calls += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if price is not None:
            self.cost_usd += price.cost(prompt_tokens, completion_tokens)

    def since(self, before: UsageSummary) -> UsageSummary:
        counts = {k: v - getattr(before, k) for k, v in self if isinstance(v, int | float) and k != "priced"}
        return UsageSummary(priced=self.priced, **counts)

    def line(self) -> str:
        cost = f"${self.cost_usd:.4f}" if self.priced else "no price"
        return (
            f"{self.requests} requests, {self.failures} failed, {self.retries} retries, "
            f"{self.prompt_tokens}+{self.completion_tokens} tokens, {cost}"
        )


def price_table(overrides: Mapping[str, Any] | None = None) -> dict[str, Price]:
    """The default table with per-spec overrides applied; a malformed override names its key."""
    table = dict(DEFAULT_PRICES)
    for model, raw in (overrides or {}).items():
        try:
            table[str(model)] = raw if isinstance(raw, Price) else Price.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(
                f"options.prices.{model}: expected {{input_per_1m: USD, output_per_1m: USD}}; "
                f"{exc.errors()[0]['msg']} (got {raw!r})"
            ) from None
    return table


def find_price(model: str, table: Mapping[str, Price]) -> Price | None:
    """Exact name first, then the longest known prefix, so dated snapshots (gpt-4o-2024-05-13,
    gpt-4-0613) get their family's price without listing every snapshot."""
    if model in table:
        return table[model]
    prefixes = [name for name in table if model.startswith(name + "-")]
    return table[max(prefixes, key=len)] if prefixes else None
