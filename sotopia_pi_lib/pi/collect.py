"""Training-data collection (SOTOPIA-pi, section 3.2): self-play episodes on generated tasks, judged.

BC data is the expert playing both agents; SR data is the policy (or, for BC+SR, the BC-trained
policy) playing both agents. Episodes and ratings go to one file pair per data source and round,
append-only, so an interrupted collection resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from ..data.sotopia import SotopiaData
from ..judge.rate import JudgeConfig, judge_episodes
from ..judge.ratings import EpisodeRating, RatingStore
from ..llm.base import LLM
from ..llm.keys import model_key
from ..sim.episode import EpisodeRecord
from ..sim.episode_store import EpisodeStore
from ..sim.pairing import setup_for_pair
from ..sim.runner import EpisodeSpec, RunConfig, RunSummary, episode_ids, run_episodes
from .tasks import GeneratedTask


class Collection(BaseModel):
    """The outcome of collecting one data source and round."""

    source: str
    round: int
    episodes: list[EpisodeRecord]
    ratings: list[EpisodeRating]
    summary: RunSummary


def self_play_specs(tasks: Sequence[GeneratedTask], data: SotopiaData, model_label: str, seed: int,
                    tags: dict[str, str]) -> list[EpisodeSpec]:
    """One episode per task and character pair, the same model in both positions."""
    specs = []
    for t in tasks:
        for i, pair in enumerate(t.agent_pairs):
            setup = setup_for_pair(t.env, pair, data)
            specs.append(EpisodeSpec(setup=setup, models=(model_label, model_label), seed=seed * 100_003 + i,
                                     tags=dict(tags)))
    return specs


def collect(
    tasks: Sequence[GeneratedTask],
    data: SotopiaData,
    *,
    source: str,
    round_: int,
    player: LLM,
    judge: LLM,
    episodes_path: Path,
    ratings_path: Path,
    sim: RunConfig,
    judging: JudgeConfig,
    seed: int,
    reformatter: LLM | None = None,
) -> Collection:
    """Play and judge self-play episodes of `player` on `tasks` (resumable through both stores): `sim`
    says how episodes are played, `judging` how they are rated, `seed` (the run's) seeds the episodes.

    Episodes and ratings are keyed by everything that shapes them (see `sim.runner.episode_id` and
    `judge.rate.plan_ratings`); those of other settings already in the files move to `superseded/`,
    so the files hold exactly this collection. `reformatter` rewrites unparseable output (sim.runner)."""
    label = model_key(source, player)
    specs = self_play_specs(tasks, data, label, seed, {"source": source, "round": str(round_)})
    store = EpisodeStore(episodes_path)
    wanted = set(episode_ids(specs, {label: player}, sim, reformatter))
    store.retain(wanted)
    result = run_episodes(specs, {label: player}, sim, store, reformatter=reformatter)
    episodes = [r for r in store.records() if r.episode_id in wanted]
    ratings_store = RatingStore(ratings_path)
    temperature, samples, cap = judging.sampling_temperature, judging.samples, judging.reasoning_max_chars
    ratings = judge_episodes(episodes, judge, agents=data.agents, samples=samples, temperature=temperature,
                             store=ratings_store, reasoning_max_chars=cap, reformatter=reformatter, retain=True)
    return Collection(source=source, round=round_, episodes=episodes, ratings=ratings, summary=result.summary)
