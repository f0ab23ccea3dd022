"""The renderer: what each agent is shown (sim.visibility), history wording, prefix growth, versions,
rebuild from a record."""

from __future__ import annotations

import pytest

from sotopia_pi_lib.data.profiles import RelationshipType
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
from sotopia_pi_lib.sim.visibility import Visibility, render_goal, render_marked

SCRIPT = [("speak", "Hello there."), ("non-verbal communication", "smiles"), ("action", "pours tea"),
          ("none", ""), ("speak", "Shall we?"), ("leave", "")]  # fmt: skip


def history(n: int) -> list[Turn]:
    return [Turn(index=i, agent=i % 2, action=AgentAction(action_type=k, argument=a), raw="")
            for i, (k, a) in enumerate(SCRIPT[:n])]  # fmt: skip


@pytest.fixture(scope="module")
def setups(sotopia):
    return setups_for_task_set(sotopia, "sotopia_all")


def test_each_agent_is_shown_what_sotopia_shows_it(setups, sotopia):
    """Own goal; the other's goal unknown; the other's secret never; its background by relationship;
    text marked for the environment or the other agent never; the relationship label and story never."""
    checked = {r: 0 for r in RelationshipType if r != RelationshipType.family_member}
    for s in setups:
        for me in (0, 1):
            other, viewer = 1 - me, ("agent_0", "agent_1")[me]
            text = "\n".join(m.content for m in render_prompt(s, me, history(4)))
            assert render_goal(s.goals[me], me, viewer).strip() in text
            assert f"{s.agent_names[other]}'s goal: unknown" in text
            assert render_marked(s.scenario, viewer).strip() in text
            mine, theirs = s.agents[me], s.agents[other]
            assert theirs.secret.strip() not in text
            stranger = s.relationship == RelationshipType.stranger
            assert (mine.secret.strip() in text) == (not stranger)  # the paper's stranger quirk
            assert (theirs.public_info.strip() in text) == (s.relationship >= RelationshipType.acquaintance)
            assert (theirs.personality_and_values.strip() in text) == (s.relationship >= RelationshipType.friend)
            pair = sotopia.relationship_between(*s.agent_ids)
            assert "Relationship" not in text
            assert pair is None or not pair.background_story or pair.background_story.strip() not in text
            checked[s.relationship] += 1
    assert all(n > 0 for n in checked.values()), checked


def test_text_marked_for_the_environment_never_reaches_an_agent(setups):
    marked = [s for s in setups if "viewer='environment'" in s.scenario.replace('"', "'")]
    assert marked, "SOTOPIA's mutual-friend scenarios carry environment-only text"
    for s in marked:
        hidden = render_marked(s.scenario, "environment").replace(render_marked(s.scenario, "agent_0"), "")
        for me in (0, 1):
            text = render_prompt(s, me, [])[-1].content
            assert "viewer" not in text and hidden.strip() not in text


def test_strangers_see_their_own_background_under_the_departure(setups):
    s = next(x for x in setups if x.relationship == RelationshipType.stranger)
    official = render_prompt(s, 0, [])[-1].content
    later = render_prompt(s, 0, [], visibility=Visibility.own_background_always)[-1].content
    assert s.agents[0].secret.strip() not in official and s.agents[0].secret.strip() in later
    assert s.agents[1].public_info.strip() not in later


def test_history_in_natural_language():
    lines = [describe_action("Ann", t.action) for t in history(6)]
    assert lines == ['Ann said: "Hello there."', "Ann [non-verbal communication] smiles", "Ann [action] pours tea",
                     "Ann did nothing", 'Ann said: "Shall we?"', "Ann left the conversation"]  # fmt: skip


def test_a_turn_where_nothing_was_done_keeps_its_number_and_no_text(setups):
    user = render_prompt(setups[0], 0, history(4))[-1].content
    assert "\nTurn 4:\n" in user and "did nothing" not in user


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
    """Every agent's prompt starts with the same system text; both agents of an episode share the
    scenario before anything private."""
    a0, b0 = render_prompt(setups[0], 0, []), render_prompt(setups[1], 1, history(2))
    assert a0[0] == b0[0]  # same system message for every agent of every episode
    s = next(x for x in setups if x.relationship == RelationshipType.friend)
    mine, theirs = (render_prompt(s, k, [])[-1].content for k in (0, 1))
    shared = mine[: next(i for i, (x, y) in enumerate(zip(mine, theirs, strict=False)) if x != y)]
    assert render_marked(s.scenario, "agent_0").strip() in shared
    assert all(p.secret.strip() not in shared for p in s.agents) and "goal" not in shared


def test_rendering_is_deterministic(setups):
    assert render_prompt(setups[5], 1, history(5)) == render_prompt(setups[5], 1, history(5))


def test_versions_registry(setups):
    with pytest.raises(ConfigError, match="unknown prompt version"):
        render_prompt(setups[0], 0, [], version="nope/v0")

    class Terse(PromptStyle):
        version = "test/terse-v0"

        def render(self, view, hist, allowed):
            return (Message(role="user", content=f"{view.names[view.agent]} {len(hist)}"),)

    register_style(Terse())
    assert render_prompt(setups[0], 1, history(2), version="test/terse-v0")[0].content.endswith(" 2")
    assert get_style(DEFAULT_PROMPT_VERSION).version == DEFAULT_PROMPT_VERSION


def _record(setup, turns, with_profiles=True) -> EpisodeRecord:
    return EpisodeRecord(
        episode_id="e1", env_id=setup.env_id, combo_id=setup.combo_id, codename=setup.codename,
        scenario=setup.scenario, agent_ids=setup.agent_ids, agent_names=setup.agent_names, goals=setup.goals,
        models=("m", "m"), prompt_version=DEFAULT_PROMPT_VERSION, seed=0, turns=turns, end_reason="leave",
        agent_profiles=setup.agents if with_profiles else None, relationship=setup.relationship,
        protocol={"visibility": "official"},
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
    departed = rec.model_copy(update={"protocol": {"visibility": "own_background_always"}})
    assert render_turn_prompt(departed, 2) == render_prompt(s, 0, history(2), visibility=Visibility.own_background_always)


def test_action_schema():
    schema = action_schema(["speak", "leave"], 50)
    assert schema["properties"]["action_type"]["enum"] == ["speak", "leave"]
    assert schema["properties"]["argument"]["maxLength"] == 50
    assert schema["required"] == ["action_type", "argument"]
