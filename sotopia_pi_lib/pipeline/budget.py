"""The failure budget: a stage in which too many units failed is not done.

Individual failures are expected at scale (a reply cut off by max_tokens, a server error after every
retry), and a stage goes on past them: each failed unit is recorded, never stored as a result, and a
re-run asks only for those. But a stage where many failed is not a result: its numbers would describe
the units that happened to succeed. So each stage counts its units (episodes, ratings, tasks, MMLU
answers, compliance flags) and the failed ones by cause; above `run.max_failure_fraction` of any kind,
the stage fails with the counts and is not marked done.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from pydantic import BaseModel, Field

from ..errors import SotopiaPiError
from ..redact import scrub_text

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


class FailureBudgetExceeded(SotopiaPiError):
    """More units of a stage failed than `run.max_failure_fraction` allows."""


class UnitCount(BaseModel):
    total: int = 0
    failed: int = 0
    causes: dict[str, int] = Field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.failed / self.total if self.total else 0.0


def failure_cause(error: str) -> str:
    """A short, countable cause from an error message: its head, without quoted text or details."""
    lowered = error.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return "timeout"
    if "connection error" in lowered or "apiconnectionerror" in lowered:
        return "connection error"
    head = _QUOTED.sub("…", error.split(":", 1)[0] if not error.startswith("HTTP ") else error[:8])
    head = re.sub(r"\s+", " ", re.sub(r"\(.*?\)", "", head)).strip()
    return scrub_text(head)[:60] or "unknown"


class FailureBudget:
    """Units and failures of one stage, per kind; `check()` raises when a kind is over the budget."""

    def __init__(self, stage: str, max_fraction: float) -> None:
        self.stage, self.max_fraction = stage, max_fraction
        self.counts: dict[str, UnitCount] = {}

    def add(self, kind: str, total: int, errors: Iterable[str]) -> UnitCount:
        """Count `total` units of `kind` of which the `errors` (one message each) failed."""
        count = self.counts.setdefault(kind, UnitCount())
        causes = Counter(failure_cause(e) for e in errors)
        count.total += total
        count.failed += sum(causes.values())
        for cause, n in causes.items():
            count.causes[cause] = count.causes.get(cause, 0) + n
        return count

    def problems(self) -> list[str]:
        return [f"{c.failed} of {c.total} {kind} failed ({c.fraction:.1%} > {self.max_fraction:.1%}): "
                + ", ".join(f"{cause} x{n}" for cause, n in sorted(c.causes.items(), key=lambda x: -x[1]))
                for kind, c in self.counts.items() if c.fraction > self.max_fraction]

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise FailureBudgetExceeded(
                f"{self.stage} is not done: " + "; ".join(problems)
                + ". Finished units are kept; re-running the stage retries only the failed ones "
                "(run.max_failure_fraction sets the budget)."
            )

    def summary(self) -> dict[str, dict]:
        return {kind: c.model_dump() for kind, c in self.counts.items()}
