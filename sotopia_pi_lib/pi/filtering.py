"""Which episodes teach the policy (SOTOPIA-pi, section 3.3).

The paper keeps, for every task, the best episode for each agent position by the judge's goal
score, ties broken by overall. A top fraction per task and a goal threshold are the alternatives the
paper discusses. Selection works on (episode, agent position) units, because a training example is
one agent's side of an episode; scores average over every rating of that episode (judges, samples).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..errors import DataError
from ..judge.ratings import EpisodeRating, join_ratings
from ..sim.episode import EpisodeRecord


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Literal["best_per_task", "top_fraction", "threshold"] = "best_per_task"
    top_fraction: float = Field(0.5, gt=0.0, le=1.0, description="rule top_fraction: share kept per task")
    goal_threshold: float = Field(7.0, description="rule threshold: keep goal >= this")
    judge: str | None = Field(None, description="only ratings of this judge label (default: all)")


def score_table(episodes: Sequence[EpisodeRecord], ratings: Sequence[EpisodeRating],
                judge: str | None = None) -> pd.DataFrame:
    """One row per (episode, agent position): task, goal and overall averaged over its ratings.

    Every episode must be rated: filtering unrated episodes would silently bias the data.
    """
    if not episodes:
        raise DataError("no episodes to filter")
    if judge is not None:
        ratings = [r for r in ratings if r.judge == judge]
    if not ratings:
        raise DataError("the episodes have no ratings" + (f" by judge {judge}" if judge else "") +
                        ": run the judge (notebook 02) before filtering")
    joined = join_ratings(episodes, ratings, strict=True)
    rows = []
    for ep, rs in joined.pairs:
        for agent in (0, 1):
            rows.append({
                "episode_id": ep.episode_id, "task": ep.env_id, "agent": agent,
                "goal": sum(r.agents[agent].scores["goal"] for r in rs) / len(rs),
                "overall": sum(r.agents[agent].overall for r in rs) / len(rs),
                "n_ratings": len(rs),
            })
    return pd.DataFrame(rows)


def select(scores: pd.DataFrame, cfg: FilterConfig) -> pd.DataFrame:
    """The kept (episode, agent) rows, with a deterministic order and tie-break (episode_id last)."""
    ranked = scores.sort_values(["task", "agent", "goal", "overall", "episode_id"],
                                ascending=[True, True, False, False, True])
    if cfg.rule == "threshold":
        kept = ranked[ranked["goal"] >= cfg.goal_threshold]
    elif cfg.rule == "best_per_task":
        kept = ranked.groupby(["task", "agent"], sort=False).head(1)
    else:
        sizes = ranked.groupby(["task", "agent"], sort=False)["episode_id"].transform("size")
        rank = ranked.groupby(["task", "agent"], sort=False).cumcount()
        kept = ranked[rank < (sizes * cfg.top_fraction).apply(math.ceil)]
    return kept.reset_index(drop=True)
