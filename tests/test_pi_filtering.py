"""Filtering rules on hand-made rated episodes: best per task and position, top fraction, threshold."""

from __future__ import annotations

import pytest

from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.judge.ratings import AgentRating, DimensionRating, EpisodeRating
from sotopia_pi_lib.judge.rubric import DIMENSION_NAMES
from sotopia_pi_lib.pi.filtering import FilterConfig, score_table, select
from sotopia_pi_lib.sim.episode import AgentAction, EpisodeRecord, Turn


def _episode(eid: str, task: str) -> EpisodeRecord:
    turn = Turn(index=0, agent=0, action=AgentAction(action_type="speak", argument="hi"), raw="{}")
    return EpisodeRecord(episode_id=eid, env_id=task, scenario="s", agent_ids=("a", "b"),
                         agent_names=("A", "B"), goals=("g1", "g2"), models=("m", "m"),
                         prompt_version="v", seed=0, turns=[turn], end_reason="leave")


def _agent(goal: int, rest: int = 0) -> AgentRating:
    scores = {d: 0 for d in DIMENSION_NAMES} | {"goal": goal, "believability": rest}
    return AgentRating.from_dimensions({k: DimensionRating(reasoning="r", score=v) for k, v in scores.items()})


def _rating(eid: str, goals: tuple[int, int], rest: tuple[int, int] = (0, 0), judge="j", sample=0):
    return EpisodeRating(episode_id=eid, judge=judge, rubric_version="r", sample_index=sample, temperature=0.0,
                         agents=(_agent(goals[0], rest[0]), _agent(goals[1], rest[1])))


@pytest.fixture
def table():
    eps = [_episode(f"e{i}", "t1") for i in range(4)] + [_episode("f0", "t2"), _episode("f1", "t2")]
    ratings = [_rating("e0", (3, 9)), _rating("e1", (8, 2)), _rating("e2", (8, 2), rest=(5, 0)),
               _rating("e3", (1, 1)), _rating("f0", (5, 5)), _rating("f0", (7, 5), sample=1),
               _rating("f1", (6, 4))]
    return score_table(eps, ratings)


def test_best_per_task_and_position_with_tie_break(table):
    kept = select(table, FilterConfig())
    got = {(r.task, r.agent): r.episode_id for r in kept.itertuples()}
    # t1 agent 0: e1 and e2 tie on goal 8, e2 wins on overall. t2 agent 0: f0's two ratings average to
    # goal 6, as f1's one: a tie on goal and overall, broken by episode id.
    assert got[("t1", 0)] == "e2" and got[("t1", 1)] == "e0"
    assert got[("t2", 0)] == "f0" and got[("t2", 1)] == "f0"
    assert len(kept) == 4
    assert table.set_index(["episode_id", "agent"]).loc[("f0", 0), "n_ratings"] == 2


def test_top_fraction_and_threshold(table):
    half = select(table, FilterConfig(rule="top_fraction", top_fraction=0.5))
    assert len(half) == 2 + 2 + 1 + 1
    high = select(table, FilterConfig(rule="threshold", goal_threshold=7))
    assert set(zip(high.episode_id, high.agent, strict=True)) == {("e0", 1), ("e1", 0), ("e2", 0)}


def test_unrated_episodes_are_an_error():
    with pytest.raises(DataError, match="have no ratings"):
        score_table([_episode("e0", "t")], [])
    with pytest.raises(DataError, match="without ratings"):
        score_table([_episode("e0", "t"), _episode("e1", "t")], [_rating("e0", (1, 1))])
