"""Generated social tasks: the record a generation run leaves on disk, and its store.

A task carries its provenance (which inspirational prompt, which example scenario, which
generator model and prompt version), so any later number can be traced back to how its task arose.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, Field, ValidationError, field_validator

from ..data.profiles import EnvironmentProfile, InspirationalPrompt
from ..errors import DataError
from ..redact import scrub_text
from ..store import atomic_write_text

REJECT_REASONS = (
    "request_failed",
    "invalid",
    "duplicate_of_sotopia",
    "duplicate_of_generated",
    "no_character_pairs",
)


class GeneratedTask(BaseModel):
    """A new SOTOPIA-style scenario with the character pairs that will play it."""

    env: EnvironmentProfile
    inspiration: InspirationalPrompt
    example_env_id: str
    generator: str = Field(description="model label of the task generator")
    prompt_version: str
    agent_pairs: list[tuple[str, str]] = Field(description="character ids, position 0 first")
    max_similarity: float = Field(description="highest similarity to SOTOPIA's and earlier tasks")
    round: int = Field(1, ge=1, description="training round the task was generated for")

    @property
    def task_id(self) -> str:
        return self.env.env_id


class RejectedTask(BaseModel):
    inspiration_pk: str
    reason: str
    detail: str = ""
    text: str = ""

    _no_secrets = field_validator("detail")(scrub_text)  # a backend error may echo a URL or key


class GenerationReport(BaseModel):
    tasks: list[GeneratedTask]
    rejected: list[RejectedTask]
    requests: int
    used_pks: list[str] = Field(default_factory=list, description="every inspiration this run drew")

    def reason_counts(self) -> dict[str, int]:
        counts = Counter(r.reason for r in self.rejected)
        return {"accepted": len(self.tasks), **{r: counts.get(r, 0) for r in REJECT_REASONS}}


def tasks_frame(tasks: list[GeneratedTask]) -> pd.DataFrame:
    """One row per task, for display."""
    return pd.DataFrame([{
        "round": t.round, "task_id": t.task_id, "source": t.inspiration.source,
        "inspiration": t.inspiration.prompt, "scenario": t.env.scenario, "goal_1": t.env.agent_goals[0],
        "goal_2": t.env.agent_goals[1], "relationship": t.env.relationship.name, "pairs": len(t.agent_pairs),
        "max_similarity": t.max_similarity} for t in tasks])


def write_tasks(path: Path, tasks: list[GeneratedTask]) -> Path:
    return atomic_write_text(path, "".join(t.model_dump_json() + "\n" for t in tasks))


def read_tasks(path: Path) -> list[GeneratedTask]:
    if not path.is_file():
        raise DataError(f"no task file at {path}: run notebook 01 (task generation) first")
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(GeneratedTask.model_validate_json(line))
            except ValidationError as e:
                raise DataError(f"{path}:{lineno}: invalid task: {e.errors()[0]['msg']}") from None
    return out
