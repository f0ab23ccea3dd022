"""Who sees what of an episode's setup, as SOTOPIA's environment decides it.

Three mechanisms of the official code (sotopia @ 7ba57e46 = sotopia 0.0.6: `sotopia/envs/parallel.py`,
`sotopia/renderers/xml_renderer.py`, `sotopia/messages/message_classes.py`), each reproduced here and
checked against the package itself (tests/test_sim_visibility.py):

1. **Visibility marks.** Scenario and goal texts may hold XML nodes `<p viewer="agent_0">…</p>`,
   `viewer="agent_1"` or `viewer="environment"` (ten SOTOPIA scenarios do; in the mutual-friends ones
   the environment-only node is the answer to the task). An agent is shown the nodes without a viewer
   or with its own; the environment, and so the judge, is shown all text.
2. **What an agent knows of each character** depends on the scenario's relationship (official
   `get_bio`): of a stranger nothing, of someone known by name the name, of an acquaintance name, age,
   gender, occupation, pronouns and public info, of a friend, partner or family member also personality
   and values. A secret is only ever shown to its owner; an agent's own background is complete.
3. **The paper's version shows backgrounds only in pairs**: its `ScriptBackground` prints the two
   background lines only when both render non-empty, so an agent facing a stranger sees no background
   at all, not even its own (and so not its own secret). This looks odd, and later sotopia releases
   (>= 0.0.7) print "Unknown" for the hidden one instead; the default reproduces the paper's version and
   `Visibility.own_background_always` offers the later behaviour as a named departure.

The relationship label and the pair's shared background story are never shown to agents, and the
other agent's goal is "unknown" to each.
"""

from __future__ import annotations

from enum import StrEnum
from io import StringIO
from typing import Literal

from lxml import etree
from pydantic import BaseModel, ConfigDict

from ..data.profiles import AgentProfile, RelationshipType

Viewer = Literal["agent_0", "agent_1", "environment"]

# Tags whose content an agent is shown (the official renderer's default `tags_to_render`); any other
# tag is dropped from an agent's view and kept in the environment's.
TAGS_TO_RENDER = ("extra_info", "clarification_hint", "strategy_hint")

# Character fields in the order the official bio names them; "name" is always known (the episode's
# participant line names both characters).
CHARACTER_FIELDS = ("name", "age", "gender", "occupation", "pronouns", "public_info", "personality", "secret")
_PUBLIC = ("name", "age", "gender", "occupation", "pronouns", "public_info")


class Visibility(StrEnum):
    """How much of the setup an agent sees (simulation.visibility)."""

    official = "official"
    own_background_always = "own_background_always"  # departure: later sotopia's stranger rendering


def viewer_of(agent: int) -> Viewer:
    return "agent_0" if agent == 0 else "agent_1"


def _render_node(node: etree._Element, viewer: Viewer) -> str:
    if node.tag not in ("root", "p", *TAGS_TO_RENDER):
        return ""
    visible = node.xpath(f"./node()[@viewer='{viewer}'] | ./node()[not(@viewer)]")
    return "".join(child if isinstance(child, str) else _render_node(child, viewer) for child in visible)


def _parse(text: str) -> etree._Element:
    """Parse like the official renderer: as XML, else wrapped in <root>, else with `&` escaped by a
    recovering parser (plain prose and prose with a stray '&' both occur in SOTOPIA's texts)."""
    try:
        return etree.fromstring(text)
    except etree.XMLSyntaxError:
        pass
    try:
        return etree.fromstring(f"<root>{text}</root>")
    except etree.XMLSyntaxError:
        parser = etree.XMLParser(recover=True, encoding="utf-8")
        return etree.parse(StringIO(f"<root>{text.replace('&', '&amp;')}</root>"), parser).getroot()


def render_marked(text: str, viewer: Viewer) -> str:
    """`text` as `viewer` is shown it: an agent sees unmarked nodes and its own; the environment all text."""
    if not text:
        return ""
    root = _parse(text)
    if viewer == "environment":
        return "".join(root.xpath("//text()"))
    return _render_node(root, viewer)


def render_goal(goal: str, owner: int, viewer: Viewer) -> str:
    """A goal as `viewer` is shown it. The official environment wraps each goal in a root node marked
    for its owner before rendering, which matters when a goal is itself one marked element."""
    return render_marked(f"<root viewer='{viewer_of(owner)}'>{goal}</root>", viewer)


def revealed_fields(relationship: RelationshipType, *, own: bool) -> tuple[str, ...]:
    """The character fields an agent is shown of a character (official `get_bio`)."""
    if own:
        return CHARACTER_FIELDS
    match relationship:
        case RelationshipType.stranger:
            return ()
        case RelationshipType.know_by_name:
            return ("name",)
        case RelationshipType.acquaintance:
            return _PUBLIC
        case _:
            return (*_PUBLIC, "personality")


class CharacterView(BaseModel):
    """One character as a viewer is shown it: the profile and which of its fields are visible."""

    model_config = ConfigDict(frozen=True)

    profile: AgentProfile
    fields: tuple[str, ...]

    def shows(self, field: str) -> bool:
        return field in self.fields


class AgentView(BaseModel):
    """Everything static an agent is shown before the conversation starts."""

    model_config = ConfigDict(frozen=True)

    agent: int
    scenario: str
    names: tuple[str, str]
    backgrounds: tuple[CharacterView, CharacterView] | None  # None: no background line is shown
    goal: str  # the agent's own goal, rendered for it; the other's is unknown


class EnvironmentView(BaseModel):
    """What the environment (the judge) is shown: all text, both complete characters, both goals."""

    model_config = ConfigDict(frozen=True)

    scenario: str
    names: tuple[str, str]
    characters: tuple[AgentProfile, AgentProfile]
    goals: tuple[str, str]


def agent_view(
    scenario: str,
    goals: tuple[str, str],
    agents: tuple[AgentProfile, AgentProfile],
    relationship: RelationshipType,
    agent: int,
    visibility: Visibility = Visibility.official,
) -> AgentView:
    """What agent `agent` is shown of the setup, under the given visibility rule."""
    viewer = viewer_of(agent)
    views = tuple(
        CharacterView(profile=p, fields=revealed_fields(relationship, own=i == agent)) for i, p in enumerate(agents)
    )
    # the paper's ScriptBackground drops both background lines when one of them renders empty
    paper_quirk = not views[1 - agent].fields and visibility == Visibility.official
    backgrounds = None if paper_quirk else (views[0], views[1])
    return AgentView(
        agent=agent,
        scenario=render_marked(scenario, viewer),
        names=(agents[0].name, agents[1].name),
        backgrounds=backgrounds,
        goal=render_goal(goals[agent], agent, viewer),
    )


def environment_view(
    scenario: str, goals: tuple[str, str], agents: tuple[AgentProfile, AgentProfile]
) -> EnvironmentView:
    return EnvironmentView(
        scenario=render_marked(scenario, "environment"),
        names=(agents[0].name, agents[1].name),
        characters=agents,
        goals=(render_goal(goals[0], 0, "environment"), render_goal(goals[1], 1, "environment")),
    )
