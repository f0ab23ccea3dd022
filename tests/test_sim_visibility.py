"""Who sees what: visibility marks, what each relationship reveals, the stranger quirk.

The parity tests run SOTOPIA's own environment (sotopia 0.0.6 in .venv-sotopia, through
tests/official/probe.py) on the real scenarios and characters and compare what it shows each agent and
the environment with what `sim.visibility` decides.
"""

from __future__ import annotations

import re

import pytest

from sotopia_pi_lib.data.profiles import RelationshipType
from sotopia_pi_lib.sim.visibility import (
    Visibility,
    agent_view,
    environment_view,
    render_goal,
    render_marked,
    revealed_fields,
)


def test_agents_see_unmarked_nodes_and_their_own():
    text = "Meet.<p viewer='environment'>Common friend: Rafael.</p><p viewer='agent_1'>Only B.</p> End."
    assert render_marked(text, "agent_0") == "Meet. End."
    assert render_marked(text, "agent_1") == "Meet.Only B. End."
    assert render_marked(text, "environment") == "Meet.Common friend: Rafael.Only B. End."


def test_goal_hints_are_shown_without_their_tags():
    goal = "Win (<extra_info>Extra information: you are tired</extra_info>)"
    assert render_goal(goal, 0, "agent_0") == "Win (Extra information: you are tired)"
    assert render_goal(goal, 0, "environment") == "Win (Extra information: you are tired)"
    assert render_marked("a <em>loud</em> b", "agent_0") == "a  b"  # unknown tags: environment only
    assert render_marked("a <em>loud</em> b", "environment") == "a loud b"


def test_prose_with_an_ampersand_renders_as_text():
    assert render_marked("Salt & pepper", "agent_1") == "Salt & pepper"


def test_relationship_reveals_more_the_closer_the_pair():
    order = [revealed_fields(r, own=False) for r in RelationshipType]
    assert order[0] == () and order[1] == ("name",)
    assert "personality" not in order[2] and "age" in order[2]
    assert all("personality" in f for f in order[3:])
    assert all("secret" not in f for f in order)
    assert all("secret" in revealed_fields(r, own=True) for r in RelationshipType)


def test_a_stranger_sees_no_background_unless_the_departure_is_chosen(sotopia):
    env = next(e for e in sotopia.environments.values() if e.relationship == RelationshipType.stranger)
    people = tuple(list(sotopia.agents.values())[:2])
    official = agent_view(env.scenario, env.agent_goals, people, env.relationship, 0)
    assert official.backgrounds is None
    later = agent_view(env.scenario, env.agent_goals, people, env.relationship, 0, Visibility.own_background_always)
    assert later.backgrounds is not None
    assert later.backgrounds[0].shows("secret") and later.backgrounds[1].fields == ()


def _cases(sotopia) -> list[tuple[object, tuple]]:
    """Every scenario with visibility marks, and for each relationship type three scenarios, each with
    its first benchmark pair (real profiles, so odd characters in them show too). SOTOPIA has no
    family scenario: friend scenarios stand in, relabelled."""
    combos = {}
    for c in sotopia.combos:
        combos.setdefault(c.env_id, c)
    envs = list(sotopia.environments.values())
    marked = [e for e in envs if "viewer" in e.scenario + "".join(e.agent_goals)]
    by_rel = []
    for r in RelationshipType:
        have = [e for e in envs if e.relationship == r][:3]
        by_rel += have or [e.model_copy(update={"relationship": r})
                           for e in envs if e.relationship == RelationshipType.friend][:3]
    return [(e, tuple(sotopia.agents[a] for a in combos[e.env_id].agent_ids)) for e in marked + by_rel]


def _framed(text: str) -> str:
    """Text as the official frame prints it: its format_docstring drops the spaces after a newline."""
    return re.sub("\n +", "\n", text)


@pytest.fixture(scope="module")
def official(sotopia, official_probe) -> tuple[list, dict]:
    cases = _cases(sotopia)
    payload = {"visibility": [
        {"scenario": e.scenario, "goals": list(e.agent_goals), "relationship": int(e.relationship),
         "agents": [p.model_dump(exclude={"agent_id", "mbti"}) for p in people]}
        for e, people in cases]}
    return cases, official_probe(payload)


def _shown(text: str, p, field: str) -> bool:
    """Whether a character field's value appears in an official rendering."""
    value = {"age": f"{p.age}-year-old", "occupation": p.occupation.lower(), "public_info": p.public_info.strip(),
             "personality": p.personality_and_values.strip(), "secret": p.secret.strip()}[field]
    return value in text


def test_marked_text_matches_the_official_renderer_node_for_node(official):
    cases, out = official
    assert sum("viewer" in e.scenario + "".join(e.agent_goals) for e, _ in cases) == 10
    for (env, people), shown in zip(cases, out["visibility"], strict=True):
        for i in (0, 1):
            mine = agent_view(env.scenario, env.agent_goals, people, env.relationship, i)
            assert f"Scenario: {_framed(mine.scenario)}\n" in shown["agents"][i], env.codename
            assert f"{people[i].name}'s goal: {_framed(mine.goal).rstrip()}" in shown["agents"][i], env.codename
            assert f"{people[1 - i].name}'s goal: Unknown" in shown["agents"][i]
        seen = environment_view(env.scenario, env.agent_goals, people)
        assert f"Scenario: {_framed(seen.scenario)}\n" in shown["environment"], env.codename
        for i in (0, 1):
            assert f"{people[i].name}'s goal: {_framed(seen.goals[i]).rstrip()}" in shown["environment"], env.codename


def test_each_relationship_reveals_the_same_fields_as_official_get_bio(official):
    cases, out = official
    assert {e.relationship for e, _ in cases} == set(RelationshipType)
    for (env, people), shown in zip(cases, out["visibility"], strict=True):
        for i in (0, 1):
            view = agent_view(env.scenario, env.agent_goals, people, env.relationship, i)
            text = shown["agents"][i]
            assert (view.backgrounds is not None) == ("'s background:" in text), (env.codename, i)
            for j, p in enumerate(people):
                fields = view.backgrounds[j].fields if view.backgrounds else ()
                for field in ("age", "occupation", "public_info", "personality", "secret"):
                    assert (field in fields) == _shown(text, p, field), (env.codename, int(env.relationship), i, j, field)
        for p in people:  # the environment (judge) is shown everything
            assert all(_shown(shown["environment"], p, f) for f in ("age", "public_info", "personality", "secret"))
