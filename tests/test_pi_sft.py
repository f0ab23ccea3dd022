"""Kept episodes -> training examples: exact prompts, `none` dropped, oldest history cut to fit."""

from __future__ import annotations

import pandas as pd

from sotopia_pi_lib.pi.sft import to_examples
from sotopia_pi_lib.sim.episode import AgentAction, EpisodeRecord, Turn
from sotopia_pi_lib.sim.pairing import setup_for_combo
from sotopia_pi_lib.sim.prompts import render_prompt


def _record(sotopia) -> EpisodeRecord:
    setup = setup_for_combo(sotopia.combos[0], sotopia)
    acts = [("speak", "Hello there, how are you today?"), ("none", ""), ("speak", "I wanted to ask you something."),
            ("non-verbal communication", "nods"), ("speak", "Could we split it evenly?"), ("leave", "")]
    turns = [Turn(index=i, agent=i % 2, action=AgentAction(action_type=a, argument=g), raw="")
             for i, (a, g) in enumerate(acts)]
    return EpisodeRecord(episode_id="e1", env_id=setup.env_id, combo_id=setup.combo_id, scenario=setup.scenario,
                         agent_ids=setup.agent_ids, agent_names=setup.agent_names, goals=setup.goals,
                         models=("m", "m"), prompt_version="sotopia-pi-lib/v2", seed=0, turns=turns,
                         end_reason="leave", agent_profiles=setup.agents, relationship=setup.relationship)


def test_examples_are_the_rendered_prompts_of_the_kept_agent(sotopia):
    rec = _record(sotopia)
    kept = pd.DataFrame([{"episode_id": "e1", "agent": 0, "goal": 7.0}, {"episode_id": "e1", "agent": 1, "goal": 3.0}])
    examples, stats = to_examples([rec], kept, source="bc", agents=sotopia.agents)
    assert stats.dropped_none == 1 and stats.examples == 5
    first = examples[0]
    setup = setup_for_combo(sotopia.combos[0], sotopia)
    assert tuple(first.prompt) == render_prompt(setup, 0, [], rec.prompt_version)
    assert first.action().argument == "Hello there, how are you today?" and first.value == 7.0
    assert [e.turn for e in examples if e.agent == 1] == [3, 5]


def test_over_long_prompt_loses_oldest_turns_but_keeps_goal_and_turn_number(sotopia):
    rec = _record(sotopia)
    kept = pd.DataFrame([{"episode_id": "e1", "agent": 0, "goal": 7.0}])
    def count(text):
        return len(text.split())
    full, _ = to_examples([rec], kept, source="bc", agents=sotopia.agents, count_tokens=count)
    last_full = sum(count(m.content) for m in full[-1].prompt)
    short, stats = to_examples([rec], kept, source="bc", agents=sotopia.agents, count_tokens=count,
                               max_prompt_tokens=last_full - 5)
    assert stats.truncated >= 1 and stats.examples == 3
    text = short[-1].prompt[-1].content
    assert "Hello there" not in text and "Turn 5, you are" in text
    assert rec.goals[0].split("(")[0].strip()[:30] in text
