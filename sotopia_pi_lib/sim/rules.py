"""SOTOPIA's episode rules: who moves, what may be done, when it ends, and the static setup.

Kept free of models and prompts so the same rules drive the runner, check stored or imported
records, and can be tested with scripted actions.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..data.profiles import AgentProfile, RelationshipType
from ..errors import DataError
from .episode import ACTION_TYPES, EndReason, EpisodeRecord, Turn


class RuleConfig(BaseModel):
    """SOTOPIA's defaults: 20 turns in all (both agents), stop after 2 consecutive `none` turns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_turns: int = Field(20, ge=1, description="turns across both agents, not rounds")
    max_stale_turns: int = Field(2, ge=1, description="consecutive `none` turns that end the episode")


class EpisodeSetup(BaseModel):
    """Everything static about one episode: what the prompts are rendered from, besides the history."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env_id: str
    codename: str = ""
    scenario: str
    goals: tuple[str, str]
    agents: tuple[AgentProfile, AgentProfile]
    relationship: RelationshipType | None = None
    background_story: str | None = None
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


def end_reason(history: Sequence[Turn], rules: RuleConfig) -> EndReason | None:
    """Why the episode is over after `history`, or None while it goes on.

    Leaving wins over the other two, since it is the agent's own choice on the last turn.
    """
    if history and history[-1].action.action_type == "leave":
        return "leave"
    k = rules.max_stale_turns
    if len(history) >= k and all(t.action.action_type == "none" for t in history[-k:]):
        return "stale"
    if len(history) >= rules.max_turns:
        return "max_turns"
    return None


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
    return EpisodeSetup(
        env_id=record.env_id,
        codename=record.codename,
        scenario=record.scenario,
        goals=record.goals,
        agents=profiles,
        relationship=record.relationship,
        background_story=record.background_story,
        combo_id=record.combo_id,
    )
