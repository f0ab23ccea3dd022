"""The rule engine on scripted actions: turn order, leave, stale stop, turn cap, record checks."""

from __future__ import annotations

import pytest

from sotopia_pi_lib.sim.episode import ACTION_TYPES, AgentAction, EpisodeRecord, Turn
from sotopia_pi_lib.sim.rules import RuleConfig, agent_to_move, allowed_actions, end_reason, rule_violations


def play(kinds: list[str], rules: RuleConfig) -> tuple[list[Turn], str | None]:
    """Feed scripted action types through the rules until they end the episode."""
    turns: list[Turn] = []
    for kind in kinds:
        turns.append(
            Turn(
                index=len(turns),
                agent=agent_to_move(len(turns)),
                action=AgentAction(action_type=kind),
                raw="",
            )
        )
        reason = end_reason(turns, rules)
        if reason is not None:
            return turns, reason
    return turns, None


def test_round_robin_agent_zero_first():
    assert [agent_to_move(i) for i in range(5)] == [0, 1, 0, 1, 0]


def test_every_action_type_allowed_each_turn():
    assert allowed_actions([]) == ACTION_TYPES
    assert set(ACTION_TYPES) == {"none", "speak", "non-verbal communication", "action", "leave"}


def test_leave_ends_immediately():
    turns, reason = play(["speak", "speak", "leave", "speak"], RuleConfig())
    assert (len(turns), reason) == (3, "leave")


def test_two_consecutive_none_is_stale():
    turns, reason = play(["speak", "none", "speak", "none", "none", "speak"], RuleConfig())
    assert (len(turns), reason) == (5, "stale")


def test_single_none_does_not_end():
    assert play(["none", "speak"] * 3, RuleConfig())[1] is None


def test_turn_cap_counts_both_agents():
    turns, reason = play(["speak"] * 30, RuleConfig())
    assert (len(turns), reason) == (20, "max_turns")
    turns, reason = play(["speak"] * 30, RuleConfig(max_turns=5))
    assert (len(turns), reason) == (5, "max_turns")


def test_leave_on_last_turn_counts_as_leave():
    assert play(["speak", "leave"], RuleConfig(max_turns=2))[1] == "leave"


def test_stale_threshold_configurable():
    turns, reason = play(["none", "none", "none"], RuleConfig(max_stale_turns=3))
    assert (len(turns), reason) == (3, "stale")
    with pytest.raises(ValueError):
        RuleConfig(max_turns=0)


def _record(turns: list[Turn], reason: str) -> EpisodeRecord:
    return EpisodeRecord(
        episode_id="e", env_id="x", scenario="s", agent_ids=("a", "b"), agent_names=("A", "B"),
        goals=("g1", "g2"), models=("m", "m"), prompt_version="v", seed=0, turns=turns, end_reason=reason,
    )  # fmt: skip


def test_rule_violations_accepts_a_legal_episode():
    turns, reason = play(["speak", "action", "leave"], RuleConfig())
    assert rule_violations(_record(turns, reason), RuleConfig()) == []


def test_rule_violations_catches_wrong_order_and_late_end():
    turns, _ = play(["speak", "none", "none"], RuleConfig(max_stale_turns=5))
    bad = [t.model_copy(update={"agent": 0}) for t in turns]
    problems = rule_violations(_record(bad, "max_turns"), RuleConfig())
    assert any("played by agent 0" in p for p in problems)
    assert "end_reason is 'max_turns' but the rules give 'stale'" in problems
    turns, _ = play(["leave", "speak"], RuleConfig(max_turns=99))
    turns.append(Turn(index=1, agent=1, action=AgentAction(action_type="speak"), raw=""))
    assert any(
        "should have ended after turn 0" in p for p in rule_violations(_record(turns, "leave"), RuleConfig())
    )
