"""What the hf backend hands its decoding path and gets back, whichever path runs: jobs in, outcomes
out, and the counters. The engine (engine/) and the plain transformers path (hf_plain.py) both
implement `Runner`, so the backend does not care which one it has."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel

from .sampling import RowSampling

if TYPE_CHECKING:
    from .grammar import CompiledSchema


class DecodeStats(BaseModel):
    """Counters since the model was built (or reset_stats), for benchmarks and progress lines."""

    requests: int = 0
    prefill_tokens_computed: int = 0
    prefill_tokens_reused: int = 0
    decode_tokens: int = 0
    jumped_tokens: int = 0  # forced tokens appended without a step of their own
    steps: int = 0  # batched decode forwards
    step_rows: int = 0  # rows summed over those forwards (steps / step_rows: mean batch)
    prefill_forwards: int = 0
    prefix_hits: int = 0  # prompts that reused a kept prefix (their session's or another call's)
    truncated_json: int = 0
    prefill_s: float = 0.0
    forward_s: float = 0.0
    grammar_s: float = 0.0
    sample_s: float = 0.0
    wall_s: float = 0.0


@dataclass
class Job:
    prompt: list[int]
    max_tokens: int
    sampling: RowSampling
    schema: CompiledSchema | None = None  # the reply must be JSON valid under it
    session: str | None = None
    # The LoRA adapter the model runs for it (its peft name; None: the base). The caller activates it
    # on the model; a runner keeps KV apart per adapter and runs one adapter at a time.
    adapter: str | None = None

    @property
    def reserve(self) -> int:
        """Tokens kept for closing the JSON (grammar.py: landing)."""
        return self.schema.reserve if self.schema is not None else 0


@dataclass
class Outcome:
    tokens: list[int]  # the reply's tokens (without a stop token)
    finish: str  # "stop" | "length"
    generated: int  # tokens the model produced, a stop token included
    reused: int  # prompt tokens whose KV came from the session cache
    latency_s: float
    error: str | None = None


OnDone = Callable[[int, Outcome], Sequence[Job] | None]


class Runner(Protocol):
    """A decoding path of the hf backend."""

    stats: DecodeStats

    def run(self, jobs: list[Job], on_done: OnDone | None = None) -> list[Outcome]:
        """Decode every job; `on_done(index, outcome)` hears of each as it finishes and may return
        follow-up jobs (numbered on from the last), which are decoded in the same call."""
        ...

    def close(self) -> None:
        """Drop what the path keeps between calls (kept KV)."""
        ...


def truncation_error(max_tokens: int, reserve: int) -> str:
    """The error of a JSON reply that max_tokens cut off (the same words from either path)."""
    return (
        f"max_tokens={max_tokens} ran out before the JSON was complete "
        f"(this schema needs a budget of at least about {reserve} tokens)"
    )
