"""What the hf decode loop works on: jobs in, outcomes out, live rows in between, and its counters."""

from __future__ import annotations

from dataclasses import dataclass

import xgrammar as xg
from pydantic import BaseModel

from .sampling import RowSampling


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
    matcher: xg.GrammarMatcher | None = None
    reserve: int = 0  # landing reserve of the job's schema (grammar.py)
    session: str | None = None


@dataclass
class Outcome:
    tokens: list[int]  # the reply's tokens (without a stop token)
    finish: str  # "stop" | "length"
    generated: int  # tokens the model produced, a stop token included
    reused: int  # prompt tokens whose KV came from the session cache
    latency_s: float
    error: str | None = None


Done = tuple[list[int], str, str | None]  # (reply tokens, finish reason, error)


@dataclass
class Live:
    index: int
    job: Job
    key: str  # its entry in the prefix store
    reused: int
    generated: list[int]
    unfed: int = 0  # tokens at the end of `generated` whose KV is not in the batch yet

    @property
    def landing(self) -> bool:
        return self.job.matcher is not None and self.job.max_tokens - len(self.generated) <= self.job.reserve
