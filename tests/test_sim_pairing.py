"""Character pairs: fixed benchmark combos, sampled pairs for new tasks, bad input."""

from __future__ import annotations

import logging

import pytest

from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.sim import candidate_pairs, parse_task, sample_pairs, setup_for_pair, setups_for_task_set


def test_benchmark_task_sets_use_fixed_combos(sotopia):
    full = setups_for_task_set(sotopia, "sotopia_all")
    hard = setups_for_task_set(sotopia, "sotopia_hard")
    assert (len(full), len(hard)) == (450, 70)
    assert [s.combo_id for s in full] == [c.combo_id for c in sotopia.combos]
    first = sotopia.combos[0]
    assert full[0].agent_ids == first.agent_ids and full[0].env_id == first.env_id
    assert full[0].goals == sotopia.environments[first.env_id].agent_goals


def test_the_setup_takes_the_scenarios_relationship_not_the_pairs(sotopia):
    """SOTOPIA decides what agents see by the scenario's relationship; the pair's own profile and story
    are shown to no one, so the setup carries neither."""
    for s in setups_for_task_set(sotopia, "sotopia_all")[::25]:
        assert s.relationship == sotopia.environments[s.env_id].relationship
        assert "background_story" not in type(s).model_fields


def generated_task(sotopia, **changes):
    env = next(e for e in sotopia.environments.values() if e.relationship == 3)
    task = env.model_dump() | {"env_id": "gen-1", "codename": "generated"}
    return task | changes


def test_sampled_pairs_respect_relationship_and_ages(sotopia):
    task = generated_task(sotopia, age_constraint="[(30, 70), (18, 40)]")
    setups = sample_pairs(task, sotopia, n=5, seed=1)
    assert len(setups) == 5 and len({s.agent_ids for s in setups}) == 5
    for s in setups:
        rel = sotopia.relationship_between(*s.agent_ids)
        assert rel is not None and rel.relationship == 3
        assert 30 <= s.agents[0].age <= 70 and 18 <= s.agents[1].age <= 40
        assert s.env_id == "gen-1" and s.relationship == 3
    assert [s.agent_ids for s in sample_pairs(task, sotopia, 5, seed=1)] == [s.agent_ids for s in setups]
    assert [s.agent_ids for s in sample_pairs(task, sotopia, 5, seed=2)] != [s.agent_ids for s in setups]


def test_fewer_pairs_than_asked_warns(sotopia, caplog):
    task = generated_task(sotopia)
    pool = candidate_pairs(parse_task(task), sotopia)
    with caplog.at_level(logging.WARNING):
        got = sample_pairs(task, sotopia, n=len(pool) + 10, seed=0)
    assert len(got) == len(pool)
    assert f"only {len(pool)} character pairs fit" in caplog.text


def test_no_fitting_pair_is_an_error(sotopia):
    task = generated_task(sotopia, age_constraint="[(90, 99), (90, 99)]")
    with pytest.raises(DataError, match="gen-1: no character pair has relationship friend"):
        sample_pairs(task, sotopia, n=3, seed=0)


def test_missing_goal_is_a_clear_error(sotopia):
    task = generated_task(sotopia)
    task["agent_goals"] = [task["agent_goals"][0]]
    with pytest.raises(DataError, match="gen-1: invalid scenario \\(agent_goals"):
        sample_pairs(task, sotopia, n=1, seed=0)
    task["agent_goals"] = [task["agent_goals"][0], "  "]
    with pytest.raises(DataError, match="agent_goals\\[1\\] is empty"):
        setup_for_pair(task, list(sotopia.agents)[:2], sotopia)


def test_unknown_character_is_a_clear_error(sotopia):
    task = generated_task(sotopia)
    with pytest.raises(DataError, match="unknown character id 'nobody'"):
        setup_for_pair(task, [next(iter(sotopia.agents)), "nobody"], sotopia)
    with pytest.raises(DataError, match="two different characters"):
        setup_for_pair(task, ["x", "x"], sotopia)
