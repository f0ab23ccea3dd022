"""SOTOPIA's episode rules: who moves, what may be done, when it ends, and the static setup.

Kept free of models and prompts so the same rules drive the runner, check stored or imported
records, and can be tested with scripted actions (tests/test_sim_rules.py plays the same action
sequences through the official environment and through these rules).

When an episode ends is the official `RuleBasedTerminatedEvaluator` (sotopia/envs/evaluators.py @
7ba57e46) applied as the official round-robin environment feeds it: every step logs both agents'
actions, the agent off turn as `none`, and after each step the evaluator ends the episode when the
step counter exceeds `max_turns`, when either agent's last action is `leave`, or when more than
`max_stale_turns` logged `none` actions stand at the end of that log. Two consequences look odd and are
reproduced on purpose: an episode runs max_turns + 1 turns, and one real `none` by the second agent ends
the episode (it is preceded by the first agent's logged `none` and the second agent's own logged `none`
of the step before). `Ending.intuitive` (a named departure) ends after `max_turns` turns or after
`max_stale_turns` consecutive real `none` turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ..data.profiles import AgentProfile, RelationshipType
from ..errors import DataError
from .episode import ACTION_TYPES, EndReason, EpisodeRecord, Turn


class Ending(StrEnum):
    official = "official"
    intuitive = "intuitive"  # departure: max_turns turns; max_stale_turns consecutive real `none` turns


class RuleConfig(BaseModel):
    """SOTOPIA's defaults: a turn limit of 20 (both agents' turns counted), 2 stale turns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_turns: int = Field(20, ge=1, description="turn limit across both agents (official: the episode ends once it is exceeded)")
    max_stale_turns: int = Field(2, ge=1, description="logged `none` actions allowed at the end of the log")
    ending: Ending = Field(Ending.official, description="official (SOTOPIA's evaluator) or intuitive (a departure)")


class EpisodeSetup(BaseModel):
    # The relationship decides what each agent sees of the other (sim.visibility); the pair's shared
    # background story is not part of the setup: SOTOPIA shows it to no one.
    """Everything static about one episode: what the prompts are rendered from, besides the history."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env_id: str
    codename: str = ""
    scenario: str
    goals: tuple[str, str]
    agents: tuple[AgentProfile, AgentProfile]
    relationship: RelationshipType
    combo_id: str | None = None

    @property
    def agent_ids(self) -> tuple[str, str]:
        return (self.agents[0].agent_id, self.agents[1].agent_id)

    @property
    def agent_names(self) -> tuple[str, str]:
        return (self.agents[0].name, self.agents[1].name)


def agent_to_move(turn_index: int) -> int:
    """Round-robin, agent 0 first (SOTOPIA's 'agent 1' in its 1-based wording)."""
    return turn_index % 2


def allowed_actions(history: Sequence[Turn]) -> tuple[str, ...]:
    """SOTOPIA offers every action type at every turn; a function so a variant rule has one place."""
    del history
    return ACTION_TYPES


def action_log(history: Sequence[Turn]) -> list[str]:
    """The action types the official environment logs: per turn, both agents in position order, the
    agent off turn as `none`."""
    log: list[str] = []
    for t in history:
        pair = ["none", "none"]
        pair[t.agent] = t.action.action_type
        log += pair
    return log


def _trailing_none(kinds: Sequence[str]) -> int:
    n = 0
    for kind in reversed(kinds):
        if kind != "none":
            break
        n += 1
    return n


def end_reason(history: Sequence[Turn], rules: RuleConfig) -> EndReason | None:
    """Why the episode is over after `history`, or None while it goes on.

    Where several reasons hold at once, leaving wins (the agent's own choice), then staleness.
    """
    if not history:
        return None
    if rules.ending == Ending.intuitive:
        kinds = [t.action.action_type for t in history]
        too_long, stale = len(history) >= rules.max_turns, _trailing_none(kinds) >= rules.max_stale_turns
        leaving = kinds[-1] == "leave"
    else:
        log = action_log(history)
        too_long = len(history) > rules.max_turns
        leaving = "leave" in log[-2:]
        stale = _trailing_none(log) > rules.max_stale_turns
    if leaving:
        return "leave"
    if stale:
        return "stale"
    return "max_turns" if too_long else None


def rule_violations(record: EpisodeRecord, rules: RuleConfig) -> list[str]:
    """Every way a stored episode breaks the rules (empty when it obeys them all)."""
    problems = []
    for i, t in enumerate(record.turns):
        if t.index != i:
            problems.append(f"turn {i} has index {t.index}")
        if t.agent != agent_to_move(i):
            problems.append(f"turn {i} was played by agent {t.agent}, expected {agent_to_move(i)}")
        if t.action.action_type not in allowed_actions(record.turns[:i]):
            problems.append(f"turn {i}: action {t.action.action_type!r} not allowed")
        early = end_reason(record.turns[: i + 1], rules)
        if early is not None and i < len(record.turns) - 1:
            problems.append(f"episode should have ended after turn {i} ({early})")
    final = end_reason(record.turns, rules)
    if final != record.end_reason:
        problems.append(f"end_reason is {record.end_reason!r} but the rules give {final!r}")
    return problems


def setup_from_record(record: EpisodeRecord, agents: dict[str, AgentProfile] | None = None) -> EpisodeSetup:
    """The static setup an episode was played with, for rebuilding its prompts.

    Records written by the runner carry the profiles; for others (imported, older) they are looked
    up in `agents` (SotopiaData.agents).
    """
    profiles = record.agent_profiles
    if profiles is None:
        if agents is None:
            raise DataError(f"episode {record.episode_id} has no agent_profiles; pass the SOTOPIA agents")
        missing = [a for a in record.agent_ids if a not in agents]
        if missing:
            raise DataError(f"episode {record.episode_id}: unknown character id(s) {missing}")
        profiles = (agents[record.agent_ids[0]], agents[record.agent_ids[1]])
    if record.relationship is None:
        raise DataError(f"episode {record.episode_id} has no relationship; what its agents saw cannot be rebuilt")
    return EpisodeSetup(
        env_id=record.env_id,
        codename=record.codename,
        scenario=record.scenario,
        goals=record.goals,
        agents=profiles,
        relationship=record.relationship,
        combo_id=record.combo_id,
    )
