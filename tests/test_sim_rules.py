"""The rule engine on scripted actions: turn order, leave, stale stop, turn cap, record checks, and the\nsame action sequences through SOTOPIA's own environment (tests/official/probe.py)."""

from __future__ import annotations

import random

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


def test_one_none_by_the_second_agent_ends_the_episode():
    """The official stale count runs over the logged actions, where the agent off turn is logged as
    `none`: a real `none` by agent 2 stands after agent 1's logged `none` and its own of the step before."""
    turns, reason = play(["speak", "none", "speak"], RuleConfig())
    assert (len(turns), reason) == (2, "stale")


def test_a_none_by_the_first_agent_does_not():
    assert play(["none", "speak"] * 5, RuleConfig(max_turns=20))[1] is None


def test_the_turn_limit_is_exceeded_before_the_end():
    turns, reason = play(["speak"] * 30, RuleConfig())
    assert (len(turns), reason) == (21, "max_turns")
    turns, reason = play(["speak"] * 30, RuleConfig(max_turns=5))
    assert (len(turns), reason) == (6, "max_turns")


def test_the_intuitive_rule_is_a_named_departure():
    rules = RuleConfig(ending="intuitive")
    assert play(["speak", "none", "speak"], rules)[1] is None
    assert play(["speak", "none", "none"], rules)[1] == "stale"
    assert len(play(["speak"] * 30, rules)[0]) == 20


def test_leave_on_the_last_turn_counts_as_leave():
    assert play(["speak", "speak", "leave"], RuleConfig(max_turns=2))[1] == "leave"


def test_stale_threshold_configurable():
    turns, reason = play(["speak", "none"], RuleConfig(max_stale_turns=3))
    assert reason is None  # three logged `none`s: agent 2's real one, agent 1's and its own logged ones
    turns, reason = play(["speak", "none", "none"], RuleConfig(max_stale_turns=3))
    assert (len(turns), reason) == (3, "stale")
    with pytest.raises(ValueError):
        RuleConfig(max_turns=0)


def _sequences(n: int, seed: int) -> list[list[str]]:
    """Seeded action sequences that exercise every rule: leaves, none runs by each agent, long talks."""
    rng = random.Random(seed)
    kinds = ["speak"] * 6 + ["none"] * 3 + ["action", "non-verbal communication", "leave"]
    return [[rng.choice(kinds) for _ in range(rng.randint(1, 26))] for _ in range(n)]


_OFFICIAL_REASON = {"leave": "leaving", "stale": "stales", "max_turns": "too long"}


def test_same_end_turn_and_reason_as_the_official_evaluator(official_probe):
    rules = [RuleConfig(max_turns=t, max_stale_turns=k) for t, k in ((20, 2), (8, 2), (4, 2), (20, 1), (6, 3))]
    cases = [(r, seq) for i, r in enumerate(rules) for seq in _sequences(40, i)]
    cases += [(RuleConfig(), ["none"] * 5), (RuleConfig(), ["speak", "none"]), (RuleConfig(), ["none", "speak"] * 13)]
    official = official_probe({"ending": [{"max_turns": r.max_turns, "max_stale": r.max_stale_turns, "actions": seq}
                                     for r, seq in cases]})["ending"]
    reasons = set()
    for (r, seq), theirs in zip(cases, official, strict=True):
        turns, reason = play(seq, r)
        steps = len(turns) if reason is not None else None
        assert steps == theirs["steps"], (r, seq, theirs)
        if reason is not None:
            assert _OFFICIAL_REASON[reason] in theirs["reasons"], (r, seq, theirs)
            reasons.add(reason)
    assert reasons == {"leave", "stale", "max_turns"}


def _record(turns: list[Turn], reason: str) -> EpisodeRecord:
    return EpisodeRecord(
        episode_id="e", env_id="x", scenario="s", agent_ids=("a", "b"), agent_names=("A", "B"),
        goals=("g1", "g2"), models=("m", "m"), prompt_version="v", seed=0, turns=turns, end_reason=reason,
    )  # fmt: skip


def test_rule_violations_accepts_a_legal_episode():
    turns, reason = play(["speak", "action", "leave"], RuleConfig())
    assert rule_violations(_record(turns, reason), RuleConfig()) == []


def test_rule_violations_catches_wrong_order_and_late_end():
    turns, _ = play(["speak", "none"], RuleConfig())
    bad = [t.model_copy(update={"agent": 0}) for t in turns]
    problems = rule_violations(_record(bad, "max_turns"), RuleConfig())
    assert any("played by agent 0" in p for p in problems)
    assert "end_reason is 'max_turns' but the rules give 'stale'" in problems
    turns, _ = play(["leave", "speak"], RuleConfig(max_turns=99))
    turns.append(Turn(index=1, agent=1, action=AgentAction(action_type="speak"), raw=""))
    assert any(
        "should have ended after turn 0" in p for p in rule_violations(_record(turns, "leave"), RuleConfig())
    )
