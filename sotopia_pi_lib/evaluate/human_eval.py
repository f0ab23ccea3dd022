"""The study's judge on SOTOPIA-pi's released human-evaluation episodes (notebook 05).

The released episodes are rated through the same call as the study's own (`judge.judge_episodes`:
cached by content, batched, resumable through an append-only rating store), so notebook 06 can put
the study's judge — the embedded model, GPT-4, any judge under development — against the released
human ratings. Small profiles rate a seeded subset: per released model, `episodes_per_model`
episodes, the tested model's two seats taken in turn so both are rated.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..judge.rate import JudgeConfig, judge_episodes
from ..judge.ratings import EpisodeRating, RatingStore
from ..llm.base import LLM
from ..sim.episode import EpisodeRecord

ReleasedModel = Literal["mistral-7b", "sr", "bc", "bc+sr", "gpt-4", "gpt-3.5"]
RELEASED_MODELS: tuple[ReleasedModel, ...] = ("mistral-7b", "sr", "bc", "bc+sr", "gpt-4", "gpt-3.5")


class HumanEvalConfig(BaseModel):
    """Which released human-evaluation episodes the study's judge rates in 05 (06 reports the released
    human numbers from the release alone, whatever this says)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    episodes_per_model: int | None = Field(
        None, ge=1, description="seeded subset per released model, tested seats in turn; None = all with a "
        "transcript (151 of 154)")
    models: tuple[ReleasedModel, ...] = Field(RELEASED_MODELS, description="released models whose episodes are rated")
    seed: int = 0

    @field_validator("models")
    @classmethod
    def _distinct(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("name at least one released model (or leave the key out for all six)")
        if len(set(v)) != len(v):
            raise ValueError(f"names a model twice: {list(v)}")
        return v


def select_released(episodes: Sequence[EpisodeRecord], cfg: HumanEvalConfig) -> list[EpisodeRecord]:
    """The episodes to rate: per model of `cfg.models`, all, or a seeded subset that takes the tested
    model's seats in turn (agent 1, agent 2, agent 1, ...; GPT-3.5 self-play is tested in both)."""
    chosen = []
    for model in cfg.models:
        mine = sorted((e for e in episodes if e.tags.get("released_model") == model), key=lambda e: e.episode_id)
        if cfg.episodes_per_model is None or cfg.episodes_per_model >= len(mine):
            chosen += mine
            continue
        seats: dict[str, list[EpisodeRecord]] = defaultdict(list)
        for e in mine:
            seats[e.tags["tested_positions"]].append(e)
        rng = random.Random(f"{cfg.seed}:{model}")
        queues = [rng.sample(group, len(group)) for _, group in sorted(seats.items())]
        picked: list[EpisodeRecord] = []
        while len(picked) < cfg.episodes_per_model:
            for q in queues:
                if q and len(picked) < cfg.episodes_per_model:
                    picked.append(q.pop())
        chosen += sorted(picked, key=lambda e: e.episode_id)
    return chosen


def judge_released(
    episodes: Sequence[EpisodeRecord],
    judge: LLM,
    store_path: Path,
    judging: JudgeConfig,
    *,
    progress: bool = True,
) -> list[EpisodeRating]:
    """Rate the released episodes with the study's judge, as `judging` says, into their own rating store
    (resumable)."""
    return judge_episodes(episodes, judge, samples=judging.samples, temperature=judging.temperature,
                          store=RatingStore(store_path), progress=progress,
                          reasoning_max_chars=judging.reasoning_max_chars)
