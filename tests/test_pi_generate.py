"""Task generation: balanced inspirations, validation, near-duplicates, and a real generation run."""

from __future__ import annotations

import collections

import pytest

from sotopia_pi_lib.data.profiles import RelationshipType
from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.pi.generate import (
    GenerationConfig,
    build_request,
    sample_inspirations,
    validate_task,
)
from sotopia_pi_lib.pi.similarity import DuplicateFinder, task_text


def test_inspirations_are_balanced_and_never_reused(sotopia):
    prompts = sotopia.inspirational_prompts
    first = sample_inspirations(prompts, 30, used=(), seed=1)
    assert collections.Counter(p.source for p in first) == {"social_iqa": 10, "social_chem": 10, "normbank": 10}
    second = sample_inspirations(prompts, 30, used={p.pk for p in first}, seed=1)
    assert not {p.pk for p in first} & {p.pk for p in second}
    assert all(p.source is not None for p in first + second)
    everything = sample_inspirations(prompts, 10_000, used=(), seed=0)
    assert len(everything) == 790  # 795 minus the 5 rows without a source


def _valid():
    return {"scenario": "Two neighbours share a driveway and both need it early tomorrow morning.",
            "agent1_goal": "Convince your neighbour to move their car tonight",
            "agent2_goal": "Keep your car where it is because you leave first",
            "relationship": "acquaintance", "min_age": 25, "max_age": 60}


def test_validate_task(sotopia):
    insp = sotopia.inspirational_prompts[0]
    env = validate_task(_valid(), "gen_x", insp)
    assert env.relationship is RelationshipType.acquaintance and env.age_constraint == [(25, 60), (25, 60)]
    for change, reason in [({"agent2_goal": _valid()["agent1_goal"]}, "same goal"),
                           ({"min_age": 70, "max_age": 30}, "bad age range"),
                           ({"scenario": "Too short."}, "fewer than 4 words")]:
        with pytest.raises(DataError, match=reason):
            validate_task({**_valid(), **change}, "gen_x", insp)


def test_copied_sotopia_scenario_is_a_near_duplicate(sotopia):
    envs = list(sotopia.environments.values())
    finder = DuplicateFinder([task_text(e.scenario, e.agent_goals) for e in envs])
    e = envs[3]
    copied = task_text(e.scenario.replace("friends", "pals"), e.agent_goals)
    assert finder.similarities(copied)[0] > 0.8
    fresh = task_text(_valid()["scenario"], [_valid()["agent1_goal"], _valid()["agent2_goal"]])
    ref, acc = finder.similarities(fresh)
    assert ref < 0.4 and acc == 0.0
    finder.accept(fresh)
    assert finder.similarities(fresh)[1] == pytest.approx(1.0)


def test_request_shows_one_whole_example_profile(sotopia):
    """As the official generator: the example is the scenario's whole profile, goal markup included."""
    env = next(e for e in sotopia.environments.values() if e.codename == "divide_things")
    req = build_request(sotopia.inspirational_prompts[0], env, GenerationConfig(n_tasks=1), seed=0)
    user = req.messages[-1].content
    assert env.model_dump_json() in user and "<extra_info>" in user
    assert sotopia.inspirational_prompts[0].prompt in user
    assert req.json_schema["required"][:3] == ["scenario", "agent1_goal", "agent2_goal"]
