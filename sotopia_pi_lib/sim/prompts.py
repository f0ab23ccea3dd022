"""Versioned agent prompts behind one renderer.

The renderer is a pure function of (setup, agent position, history, version): the runner uses it to
ask for each turn, the SFT stage uses it to rebuild the exact prompt of any stored turn, so a trained
model sees at test time the prompt it was trained on. Change a template -> register a new version.

Layout for KV-cache reuse: everything static comes first, the history grows after it, and only the
short turn line comes last, so an agent's next prompt extends its previous one up to that line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from ..data.profiles import AgentProfile
from ..errors import ConfigError
from ..llm.types import Message
from .episode import AgentAction, EpisodeRecord, Turn
from .rules import EpisodeSetup, agent_to_move, allowed_actions, setup_from_record
from .visibility import AgentView, CharacterView, Visibility, agent_view

DEFAULT_PROMPT_VERSION = "sotopia-pi-lib/v2"


def describe_action(name: str, action: AgentAction) -> str:
    """One history line in natural language, as SOTOPIA renders an action."""
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
    """The history block, one line per turn numbered from 1. A turn where the agent did nothing keeps
    its number with nothing after it: SOTOPIA logs no text for a `none` action."""
    lines = []
    for t in history:
        said = "" if t.action.action_type == "none" else f" {describe_action(names[t.agent], t.action)}"
        lines.append(f"Turn {t.index + 1}:{said}\n")
    return "".join(lines)


def next_turn_index(history: Sequence[Turn]) -> int:
    """From the turns' own indices, so a history with its oldest turns cut (to fit a token budget)
    still numbers the coming turn right."""
    return history[-1].index + 1 if history else 0


def action_schema(allowed: Sequence[str], max_argument_chars: int | None = None) -> dict[str, Any]:
    """The JSON schema every action is decoded under when decoding is constrained."""
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
    def render(self, view: AgentView, history: Sequence[Turn], allowed: Sequence[str]) -> tuple[Message, ...]:
        """The chat messages of the agent whose view this is, before turn len(history)."""


_SYSTEM = (
    "You role-play a character in a conversation with one other character. Act and speak as your "
    "character would, and pursue your character's goal in a way that fits them. Keep the conversation "
    "natural and do not repeat what was already said. Only you know your goal.\n"
    'Each turn, reply with one action: "speak" (argument: what you say), "non-verbal communication" '
    '(a gesture or expression), "action" (a physical action), "none" (do nothing) or "leave" (end the '
    "conversation). Leave once your goal is achieved, the conversation makes you uncomfortable, you "
    "lose interest, or for another reason of your own.\n"
    'Answer with one JSON object and nothing else: {"action_type": "<one of the allowed actions>", '
    '"argument": "<the words, gesture or action; empty for none and leave>"}.'
)


def _character(view: CharacterView) -> str:
    """A character's background with exactly the fields the viewer may see (sim.visibility)."""
    p = view.profile
    parts = [p.name if view.shows("name") else ""]
    if view.shows("age"):
        parts.append(f"is a {p.age}-year-old {p.gender.lower()}, {p.occupation},")
    if view.shows("pronouns"):
        parts.append(f"pronouns {p.gender_pronoun.lower()}.")
    if view.shows("public_info"):
        parts.append(p.public_info.strip())
    if view.shows("personality"):
        parts.append(f"Personality and values: {p.personality_and_values.strip()}")
    if view.shows("secret"):
        parts.append(f"Secret: {p.secret.strip()}")
    return " ".join(x for x in parts if x)


class LeanStyle(PromptStyle):
    """The project's own wording: complete but short.

    What each agent is shown follows SOTOPIA's rules (sim.visibility: visibility marks, what the
    relationship reveals of each character, the paper's stranger quirk). Shared before private: the
    system text is the same for every agent of every episode, so a backend with prefix caching computes
    it once; the agent's view follows, then the history, and only the short turn line comes last, so an
    agent's next prompt extends its previous one up to that line.
    """

    version = DEFAULT_PROMPT_VERSION

    def render(self, view: AgentView, history: Sequence[Turn], allowed: Sequence[str]) -> tuple[Message, ...]:
        user = (
            self._context(view)
            + "\n\nConversation:\n"
            + render_history(view.names, history)
            + self._turn_line(view.names[view.agent], next_turn_index(history), allowed)
        )
        return (Message(role="system", content=_SYSTEM), Message(role="user", content=user))

    @staticmethod
    def _context(view: AgentView) -> str:
        me, other = view.names[view.agent], view.names[1 - view.agent]
        lines = [f"Scenario: {view.scenario.strip()}", f"Participants: {view.names[0]} and {view.names[1]}"]
        if view.backgrounds is not None:
            lines += [f"{c.profile.name}'s background: {_character(c)}" for c in view.backgrounds]
        lines += [f"You are {me}.", f"{me}'s goal: {view.goal.strip()}", f"{other}'s goal: unknown"]
        return "\n".join(lines)

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


def setup_view(setup: EpisodeSetup, agent: int, visibility: Visibility = Visibility.official) -> AgentView:
    """What agent `agent` is shown of an episode's setup."""
    if agent not in (0, 1):
        raise ValueError(f"agent position must be 0 or 1, got {agent}")
    return agent_view(setup.scenario, setup.goals, setup.agents, setup.relationship, agent, visibility)


def render_prompt(
    setup: EpisodeSetup,
    agent: int,
    history: Sequence[Turn],
    version: str = DEFAULT_PROMPT_VERSION,
    visibility: Visibility = Visibility.official,
) -> tuple[Message, ...]:
    """The messages agent `agent` sees before turn len(history), in the given prompt version."""
    view = setup_view(setup, agent, visibility)
    return get_style(version).render(view, history, allowed_actions(history))


def render_turn_prompt(
    record: EpisodeRecord, turn_index: int, agents: dict[str, AgentProfile] | None = None
) -> tuple[Message, ...]:
    """Rebuild exactly the prompt the agent saw at `turn_index` of a stored episode (a sotopia-style
    turn carries the prompt the model received, which is returned as it is)."""
    if not 0 <= turn_index < len(record.turns):
        raise IndexError(f"episode {record.episode_id} has no turn {turn_index} ({len(record.turns)} turns)")
    if record.turns[turn_index].prompt is not None:
        return tuple(record.turns[turn_index].prompt)
    setup = setup_from_record(record, agents)
    visibility = Visibility(record.protocol.get("visibility", Visibility.official))
    agent = agent_to_move(turn_index)
    return render_prompt(setup, agent, record.turns[:turn_index], record.prompt_version, visibility)


register_style(LeanStyle())
