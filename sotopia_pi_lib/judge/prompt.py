"""The judge prompt: what SOTOPIA's evaluator is given, in the project's own wording.

The official `ReachGoalLLMEvaluator` (sotopia/envs/evaluators.py @ 7ba57e46) is given the environment's
view of the episode: the scenario with every visibility mark rendered, both characters' complete
backgrounds with their secrets, both goals, and the turns with the `none` actions left out. It is not
told the relationship type, the pair's background story, or why the episode ended; neither is this
judge. It must know each secret to score `secret` and each goal to score `goal`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping

from ..data.profiles import AgentProfile
from ..errors import DataError
from ..llm.types import LLMRequest, Message, SamplingParams
from ..sim.episode import EpisodeRecord
from ..sim.prompts import describe_action
from ..sim.visibility import EnvironmentView, environment_view
from .ratings import parse_judgement
from .rubric import DIMENSIONS, REASONING_MAX_CHARS, RUBRIC_VERSION
from .schema import judge_max_tokens, judge_schema

SYSTEM = (
    "You are an impartial expert judge of social interactions. You read a role-play between two "
    "characters, each pursuing a private social goal, and rate each character on seven dimensions. "
    "Judge only from the conversation and the information given. For every dimension, first write "
    "your reasoning as each dimension's instructions ask, then give an integer score within the stated range."
)


def _character(p: AgentProfile, goal: str, label: str) -> str:
    return (
        f"{label}: {p.name} ({p.gender_pronoun.lower()}), {p.age}, {p.occupation}. {p.public_info.strip()} "
        f"Personality and values: {p.personality_and_values.strip()} "
        f"Secret: {p.secret.strip()}\n"
        f"{p.name}'s goal: {goal.strip()}"
    )


def render_transcript(record: EpisodeRecord) -> str:
    """Every turn where an agent did something, numbered; `none` turns are left out, as SOTOPIA does."""
    names = record.agent_names
    return "\n".join(
        f"Turn {t.index + 1}: {describe_action(names[t.agent], t.action)}"
        for t in record.turns
        if t.action.action_type != "none"
    )


def _rubric_text(names: tuple[str, str]) -> str:
    dims = "\n".join(f"- {d.name} [{d.low}, {d.high}]: {d.description}" for d in DIMENSIONS)
    return (
        f"Rate agent_1 ({names[0]}) and agent_2 ({names[1]}) separately on each dimension below; "
        "the integer score must lie in the range shown in brackets.\n"
        f"{dims}\n"
        'Answer with one JSON object: {"agent_1": {"believability": {"reasoning": "...", "score": N}, '
        '... all seven dimensions ...}, "agent_2": {... the same seven ...}}.'
    )


def render_judge_messages(view: EnvironmentView, record: EpisodeRecord) -> tuple[Message, ...]:
    parts = [
        f"Scenario: {view.scenario.strip()}",
        _character(view.characters[0], view.goals[0], "agent_1"),
        _character(view.characters[1], view.goals[1], "agent_2"),
        "Conversation:\n" + render_transcript(record),
        _rubric_text(view.names),
    ]
    return (Message(role="system", content=SYSTEM), Message(role="user", content="\n\n".join(parts)))


def judge_view(record: EpisodeRecord, agents: Mapping[str, AgentProfile] | None = None) -> EnvironmentView:
    """The environment's view of a stored episode; records without profiles look them up in `agents`."""
    profiles = record.agent_profiles
    if profiles is None:
        missing = [a for a in record.agent_ids if agents is None or a not in agents]
        if missing:
            raise DataError(f"episode {record.episode_id}: no agent_profiles and unknown character id(s) {missing}")
        profiles = (agents[record.agent_ids[0]], agents[record.agent_ids[1]])
    return environment_view(record.scenario, record.goals, profiles)


def judge_request(
    record: EpisodeRecord,
    agents: Mapping[str, AgentProfile] | None = None,
    *,
    temperature: float = 0.0,
    sample_index: int = 0,
    seed: int = 0,
    reasoning_max_chars: int | None = REASONING_MAX_CHARS,
) -> LLMRequest:
    """The request that rates both agents of one episode (the judge's schema and token budget set)."""
    return LLMRequest(
        messages=render_judge_messages(judge_view(record, agents), record),
        json_schema=judge_schema(reasoning_max_chars),
        sampling=SamplingParams(temperature=temperature, max_tokens=judge_max_tokens(reasoning_max_chars)),
        seed=seed,
        sample_index=sample_index,
    )


def rubric_fingerprint() -> str:
    """sha256 over everything RUBRIC_VERSION stands for: dimensions, schema, budget, prompt wording.

    The prompt is covered by rendering a fixed dummy episode, so any template change shows.
    """
    probe = _probe_episode()
    content = {
        "dimensions": [d.model_dump() for d in DIMENSIONS],
        "schema": judge_schema(),
        "max_tokens": judge_max_tokens(),
        "messages": [m.model_dump() for m in render_judge_messages(*probe)],
        "parser": inspect.getsource(parse_judgement),  # the parser is part of the version too
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _probe_episode() -> tuple[EnvironmentView, EpisodeRecord]:
    from ..data.profiles import RelationshipType
    from ..sim.episode import AgentAction, Turn

    people = tuple(
        AgentProfile(
            agent_id=f"a{i}", first_name=f"F{i}", last_name=f"L{i}", age=30 + i, occupation="O",
            gender="G", gender_pronoun="P", public_info="I.", big_five="B", moral_values=["M"],
            schwartz_personal_values=["S"], personality_and_values="V.", decision_making_style="D",
            secret="X", mbti="M",
        )
        for i in (0, 1)
    )  # fmt: skip
    acts = [
        ("speak", "hi"),
        ("non-verbal communication", "nods"),
        ("action", "pays"),
        ("none", ""),
        ("leave", ""),
    ]
    turns = [
        Turn(index=i, agent=i % 2, action=AgentAction(action_type=a, argument=arg), raw="")
        for i, (a, arg) in enumerate(acts)
    ]
    record = EpisodeRecord(
        episode_id="probe", env_id="e", scenario="S.", agent_ids=("a0", "a1"),
        agent_names=(people[0].name, people[1].name), goals=("G0 <extra_info>E</extra_info>", "G1"),
        models=("m", "m"), prompt_version=RUBRIC_VERSION, seed=0, turns=turns, end_reason="leave",
        agent_profiles=people, relationship=RelationshipType.friend,
    )  # fmt: skip
    return judge_view(record), record


def judge_prompt_text(record: EpisodeRecord, agents: Mapping[str, AgentProfile] | None = None) -> str:
    """The judge prompt as one text (for EpisodeLog.rewards_prompt in exports)."""
    return "\n\n".join(m.content for m in judge_request(record, agents).messages)
