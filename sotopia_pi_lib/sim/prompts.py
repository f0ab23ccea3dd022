"""Versioned agent prompts behind one renderer.

The renderer is a pure function of (setup, agent position, history, version): the runner uses it to
ask for each turn, the SFT stage uses it to rebuild the exact prompt of any stored turn, so a trained
model sees at test time the prompt it was trained on. Change a template -> register a new version.

Layout for KV-cache reuse: everything static comes first, the history grows after it, and only the
short turn line comes last, so an agent's next prompt extends its previous one up to that line.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from ..data.profiles import AgentProfile, RelationshipType
from ..errors import ConfigError
from ..llm.types import Message
from .episode import AgentAction, EpisodeRecord, Turn
from .rules import EpisodeSetup, agent_to_move, allowed_actions, setup_from_record

DEFAULT_PROMPT_VERSION = "sotopia-pi-lib/v1"

_RELATION_PHRASE = {
    RelationshipType.stranger: "are strangers",
    RelationshipType.know_by_name: "know each other by name",
    RelationshipType.acquaintance: "are acquaintances",
    RelationshipType.friend: "are friends",
    RelationshipType.romantic_relationship: "are in a romantic relationship",
    RelationshipType.family_member: "are family members",
}
_GOAL_TAG = re.compile(r"</?(extra_info|strategy_hint|clarification_hint)>")


def describe_action(name: str, action: AgentAction) -> str:
    """One history line in natural language, as SOTOPIA renders it."""
    arg = action.argument.strip()
    match action.action_type:
        case "speak":
            return f'{name} said: "{arg}"'
        case "non-verbal communication":
            return f"{name} [non-verbal communication] {arg}"
        case "action":
            return f"{name} [action] {arg}"
        case "none":
            return f"{name} did nothing"
        case "leave":
            return f"{name} left the conversation"
    raise AssertionError(action.action_type)


def render_history(names: tuple[str, str], history: Sequence[Turn]) -> str:
    """The history block, one line per turn numbered from 1 (also usable by the judge)."""
    return "".join(f"Turn {t.index + 1}: {describe_action(names[t.agent], t.action)}\n" for t in history)


def next_turn_index(history: Sequence[Turn]) -> int:
    """From the turns' own indices, so a history with its oldest turns cut (to fit a token budget)
    still numbers the coming turn right."""
    return history[-1].index + 1 if history else 0


def clean_goal(goal: str) -> str:
    """SOTOPIA goals carry <extra_info>-style markup; agents see the text without the tags."""
    return _GOAL_TAG.sub("", goal).strip()


def action_schema(allowed: Sequence[str], max_argument_chars: int | None = None) -> dict[str, Any]:
    """The JSON schema every action is decoded under, so it always parses."""
    argument: dict[str, Any] = {"type": "string"}
    if max_argument_chars is not None:
        argument["maxLength"] = max_argument_chars
    return {
        "type": "object",
        "properties": {"action_type": {"type": "string", "enum": list(allowed)}, "argument": argument},
        "required": ["action_type", "argument"],
        "additionalProperties": False,
    }


class PromptStyle(ABC):
    """One prompt wording. Subclass, give it a new `version`, and `register_style` it."""

    version: str

    @abstractmethod
    def render(self, setup: EpisodeSetup, agent: int, history: Sequence[Turn]) -> tuple[Message, ...]:
        """The chat messages agent `agent` sees before turn len(history)."""


_SYSTEM = (
    "You role-play a character in a conversation with one other character. Act and speak as your "
    "character would, and pursue your character's goal in a way that fits them. Keep the conversation "
    "natural and do not repeat what was already said. Only you know your goal and your secret.\n"
    'Each turn, reply with one action: "speak" (argument: what you say), "non-verbal communication" '
    '(a gesture or expression), "action" (a physical action), "none" (do nothing) or "leave" (end the '
    "conversation). Leave only once your goal is achieved, the conversation makes you uncomfortable, "
    "or going on is pointless."
)


class LeanStyle(PromptStyle):
    """The project's own wording: complete but short (the JSON format is enforced by the schema).

    Shared before private: the system text is the same for every agent of every episode, and the
    scenario and both public backgrounds are the same for both agents of an episode, so a backend
    with prefix caching computes them once; the agent's own secret and goal follow, then the history.
    """

    version = DEFAULT_PROMPT_VERSION

    def render(self, setup: EpisodeSetup, agent: int, history: Sequence[Turn]) -> tuple[Message, ...]:
        user = (
            self._shared(setup)
            + self._private(setup, agent)
            + "\n\nConversation:\n"
            + render_history(setup.agent_names, history)
            + self._turn_line(setup.agent_names[agent], next_turn_index(history), allowed_actions(history))
        )
        return (Message(role="system", content=_SYSTEM), Message(role="user", content=user))

    @staticmethod
    def _background(p: AgentProfile) -> str:
        return (
            f"{p.name}'s background: {p.name} is a {p.age}-year-old {p.gender.lower()}, {p.occupation}, "
            f"pronouns {p.gender_pronoun.lower()}. {p.public_info.strip()} "
            f"Personality and values: {p.personality_and_values.strip()}"
        )

    def _shared(self, setup: EpisodeSetup) -> str:
        names = setup.agent_names
        lines = [f"Scenario: {setup.scenario.strip()}", f"Participants: {names[0]} and {names[1]}"]
        if setup.relationship is not None:
            story = f" {setup.background_story.strip()}" if setup.background_story else ""
            lines.append(f"Relationship: they {_RELATION_PHRASE[setup.relationship]}.{story}")
        lines += [self._background(p) for p in setup.agents]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _private(setup: EpisodeSetup, agent: int) -> str:
        me, other = setup.agents[agent], setup.agents[1 - agent]
        return (
            f"\nYou are {me.name}.\n{me.name}'s secret: {me.secret.strip()}\n"
            f"{me.name}'s goal: {clean_goal(setup.goals[agent])}\n{other.name}'s goal: unknown"
        )

    @staticmethod
    def _turn_line(me: str, turn_index: int, allowed: Sequence[str]) -> str:
        return f"\nTurn {turn_index + 1}, you are {me}. Allowed actions: {', '.join(allowed)}."


_STYLES: dict[str, PromptStyle] = {}


def register_style(style: PromptStyle) -> None:
    """Add a prompt style (e.g. a SOTOPIA-parity one) under its version string."""
    if style.version in _STYLES and type(_STYLES[style.version]) is not type(style):
        raise ConfigError(f"prompt version {style.version!r} is already registered by another style")
    _STYLES[style.version] = style


def prompt_versions() -> list[str]:
    return sorted(_STYLES)


def get_style(version: str) -> PromptStyle:
    if version not in _STYLES:
        raise ConfigError(f"unknown prompt version {version!r}; known: {', '.join(prompt_versions())}")
    return _STYLES[version]


def render_prompt(
    setup: EpisodeSetup, agent: int, history: Sequence[Turn], version: str = DEFAULT_PROMPT_VERSION
) -> tuple[Message, ...]:
    """The messages agent `agent` sees before turn len(history), in the given prompt version."""
    if agent not in (0, 1):
        raise ValueError(f"agent position must be 0 or 1, got {agent}")
    return get_style(version).render(setup, agent, history)


def render_turn_prompt(
    record: EpisodeRecord, turn_index: int, agents: dict[str, AgentProfile] | None = None
) -> tuple[Message, ...]:
    """Rebuild exactly the prompt the agent saw at `turn_index` of a stored episode."""
    if not 0 <= turn_index < len(record.turns):
        raise IndexError(f"episode {record.episode_id} has no turn {turn_index} ({len(record.turns)} turns)")
    setup = setup_from_record(record, agents)
    agent = agent_to_move(turn_index)
    return render_prompt(setup, agent, record.turns[:turn_index], record.prompt_version)


register_style(LeanStyle())
