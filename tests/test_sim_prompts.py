"""The renderer: what each agent may see, history wording, prefix growth, versions, rebuild from a record."""

from __future__ import annotations

import pytest

from sotopia_pi_lib.errors import ConfigError, DataError
from sotopia_pi_lib.llm.types import Message
from sotopia_pi_lib.sim import (
    DEFAULT_PROMPT_VERSION,
    AgentAction,
    EpisodeRecord,
    PromptStyle,
    Turn,
    action_schema,
    describe_action,
    get_style,
    register_style,
    render_prompt,
    render_turn_prompt,
    setups_for_task_set,
)
from sotopia_pi_lib.sim.prompts import clean_goal

SCRIPT = [("speak", "Hello there."), ("non-verbal communication", "smiles"), ("action", "pours tea"),
          ("none", ""), ("speak", "Shall we?"), ("leave", "")]  # fmt: skip


def history(n: int) -> list[Turn]:
    return [Turn(index=i, agent=i % 2, action=AgentAction(action_type=k, argument=a), raw="")
            for i, (k, a) in enumerate(SCRIPT[:n])]  # fmt: skip


@pytest.fixture(scope="module")
def setups(sotopia):
    return setups_for_task_set(sotopia, "sotopia_all")


def test_each_agent_sees_own_goal_and_secret_only(setups):
    checked = 0
    for s in setups:
        for me in (0, 1):
            other = 1 - me
            text = "\n".join(m.content for m in render_prompt(s, me, history(4)))
            assert clean_goal(s.goals[me]) in text
            assert f"{s.agent_names[other]}'s goal: unknown" in text
            assert s.agents[me].secret.strip() in text
            assert s.agents[other].secret.strip() not in text
            if clean_goal(s.goals[other]) != clean_goal(s.goals[me]):
                assert clean_goal(s.goals[other]) not in text
                checked += 1
            for p in s.agents:  # both public backgrounds
                assert p.public_info.strip() in text and p.personality_and_values.strip() in text
            assert s.scenario.strip() in text
    assert checked > 800


def test_goal_markup_removed():
    goal = "Win (<extra_info>Extra information: you are tired</extra_info>)"
    assert clean_goal(goal) == "Win (Extra information: you are tired)"


def test_history_in_natural_language():
    lines = [describe_action("Ann", t.action) for t in history(6)]
    assert lines == ['Ann said: "Hello there."', "Ann [non-verbal communication] smiles", "Ann [action] pours tea",
                     "Ann did nothing", 'Ann said: "Shall we?"', "Ann left the conversation"]  # fmt: skip


def test_turn_line_last_with_allowed_actions(setups):
    user = render_prompt(setups[0], 1, history(3))[-1].content
    last = user.splitlines()[-1]
    assert last.startswith(f"Turn 4, you are {setups[0].agent_names[1]}.")
    assert "none, speak, non-verbal communication, action, leave" in last
    assert f'Turn 1: {setups[0].agent_names[0]} said: "Hello there."' in user


def test_next_prompt_extends_previous_one(setups):
    """Static part first, history next, turn line last: KV-cache reuse depends on it."""
    for s in setups[:20]:
        for k in range(4):
            now, later = render_prompt(s, k % 2, history(k)), render_prompt(s, k % 2, history(k + 2))
            assert now[:-1] == later[:-1]
            stem = now[-1].content.rsplit("\n", 2)[0]
            assert later[-1].content.startswith(stem + "\n")
            assert len(later[-1].content) - len(stem) < 200 + sum(len(a) for _, a in SCRIPT)


def test_shared_parts_come_first(setups):
    """Both agents' prompts share the system text and the public context before anything private."""
    a0, b0 = render_prompt(setups[0], 0, []), render_prompt(setups[1], 1, history(2))
    assert a0[0] == b0[0]  # same system message for every agent of every episode
    mine, theirs = (render_prompt(setups[0], k, [])[-1].content for k in (0, 1))
    shared = mine[: next(i for i, (x, y) in enumerate(zip(mine, theirs, strict=False)) if x != y)]
    for p in setups[0].agents:
        assert p.public_info.strip() in shared and p.secret.strip() not in shared
    assert "goal" not in shared


def test_rendering_is_deterministic(setups):
    assert render_prompt(setups[5], 1, history(5)) == render_prompt(setups[5], 1, history(5))


def test_versions_registry(setups):
    with pytest.raises(ConfigError, match="unknown prompt version"):
        render_prompt(setups[0], 0, [], version="nope/v0")

    class Terse(PromptStyle):
        version = "test/terse-v0"

        def render(self, setup, agent, hist):
            return (Message(role="user", content=f"{setup.agent_names[agent]} {len(hist)}"),)

    register_style(Terse())
    assert render_prompt(setups[0], 1, history(2), version="test/terse-v0")[0].content.endswith(" 2")
    assert get_style(DEFAULT_PROMPT_VERSION).version == DEFAULT_PROMPT_VERSION


def _record(setup, turns, with_profiles=True) -> EpisodeRecord:
    return EpisodeRecord(
        episode_id="e1", env_id=setup.env_id, combo_id=setup.combo_id, codename=setup.codename,
        scenario=setup.scenario, agent_ids=setup.agent_ids, agent_names=setup.agent_names, goals=setup.goals,
        models=("m", "m"), prompt_version=DEFAULT_PROMPT_VERSION, seed=0, turns=turns, end_reason="leave",
        agent_profiles=setup.agents if with_profiles else None, relationship=setup.relationship,
        background_story=setup.background_story,
    )  # fmt: skip


def test_rebuild_from_record_matches_render(setups, sotopia):
    s = setups[7]
    rec = _record(s, history(6))
    again = EpisodeRecord.model_validate_json(rec.model_dump_json())
    for i in range(6):
        assert render_turn_prompt(again, i) == render_prompt(s, i % 2, history(i))
    bare = _record(s, history(6), with_profiles=False)
    assert render_turn_prompt(bare, 3, sotopia.agents) == render_prompt(s, 1, history(3))
    with pytest.raises(DataError, match="no agent_profiles"):
        render_turn_prompt(bare, 3)
    with pytest.raises(IndexError):
        render_turn_prompt(rec, 6)


def test_action_schema():
    schema = action_schema(["speak", "leave"], 50)
    assert schema["properties"]["action_type"]["enum"] == ["speak", "leave"]
    assert schema["properties"]["argument"]["maxLength"] == 50
    assert schema["required"] == ["action_type", "argument"]
