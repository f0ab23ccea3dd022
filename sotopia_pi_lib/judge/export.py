"""Export episodes (and their ratings) in the JSON shape of sotopia's `EpisodeLog`.

The shape follows sotopia's `EpisodeLog` (sotopia/database/logs.py; tests/test_judge_export.py checks
exports against the official model in sotopia 0.0.6, the paper's version): pk, environment, agents, tag, models, messages, reasoning,
rewards, rewards_prompt. `messages` is a list of steps, each a list of (sender, receiver, text):
step 0 opens with what each agent knows ("Environment" -> agent), every step ends with both agents'
actions (agent -> "Environment"; SOTOPIA's round-robin masks the idle agent to "did nothing"), and
each step after that opens with the previous turn as the environment reports it. `rewards` holds,
per agent, (overall, {dimension: score, ..., "overall_score": overall}). `models` is
[evaluator, agent 1 model, agent 2 model], as sotopia's server writes it.

It lives with the judge because an exported episode carries its ratings.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ..data.profiles import AgentProfile
from ..errors import DataError
from ..sim.episode import AgentAction, EpisodeRecord
from ..sim.prompts import setup_view
from ..sim.rules import setup_from_record
from ..sim.visibility import CharacterView, Visibility
from ..store.files import atomic_write_text
from .ratings import EpisodeRating

ENV = "Environment"
Reward = tuple[float, dict[str, float]] | float


class EpisodeLogJSON(BaseModel):
    """sotopia's BaseEpisodeLog fields, typed here so an export is checked without sotopia installed."""

    model_config = ConfigDict(extra="forbid")

    pk: str
    environment: str
    agents: list[str]
    tag: str = ""
    models: list[str] = []
    messages: list[list[tuple[str, str, str]]]
    reasoning: str = ""
    rewards: list[Reward]
    rewards_prompt: str = ""


def action_text(action: AgentAction) -> str:
    """An action in sotopia's natural language (AgentAction.to_natural_language)."""
    match action.action_type:
        case "none":
            return "did nothing"
        case "speak":
            return f'said: "{action.argument}"'
        case "leave":
            return "left the conversation"
        case other:
            return f"[{other}] {action.argument}"


def _bio(view: CharacterView) -> str:
    """A background in the official bio's shape, holding only the fields the viewer may see."""
    p = view.profile
    parts = [p.name if view.shows("name") else ""]
    if view.shows("age"):
        parts.append(f"is a {p.age}-year-old {p.gender.lower()} {p.occupation.lower()}. {p.gender_pronoun} pronouns. "
                     f"{p.public_info.strip()}")
    if view.shows("personality"):
        parts.append(f"Personality and values description: {p.personality_and_values.strip()}")
    if view.shows("secret"):
        parts.append(f"{p.first_name}'s secrets: {p.secret.strip()}")
    return " ".join(x for x in parts if x)


def _intro(record: EpisodeRecord, agents: Mapping[str, AgentProfile] | None, me: int) -> str:
    """What agent `me` was shown before the first turn (sim.visibility), in sotopia's message shape."""
    setup = setup_from_record(record, dict(agents) if agents is not None else None)
    view = setup_view(setup, me, Visibility(record.protocol.get("visibility", Visibility.official)))
    names = view.names
    lines = ["Here is the context of this interaction:", f"Scenario: {view.scenario.strip()}",
             f"Participants: {names[0]} and {names[1]}"]  # fmt: skip
    if view.backgrounds is not None:
        lines += [f"{c.profile.name}'s background: {_bio(c)}" for c in view.backgrounds]
    for i in (0, 1):
        lines.append(f"{names[i]}'s goal: {view.goal.strip() if i == me else 'Unknown'}")
    return "\n" + "\n".join(lines) + "\nConversation Starts:\n"


def episode_messages(
    record: EpisodeRecord, agents: Mapping[str, AgentProfile] | None = None
) -> list[list[tuple[str, str, str]]]:
    names = record.agent_names
    steps = [[(ENV, names[i], _intro(record, agents, i)) for i in (0, 1)]]
    for turn in record.turns:
        for i in (0, 1):
            text = action_text(turn.action) if i == turn.agent else "did nothing"
            steps[-1].append((names[i], ENV, text))
        seen = "" if turn.action.action_type == "none" else f"{names[turn.agent]} {action_text(turn.action)}"
        steps.append([(ENV, names[i], f"Turn #{turn.index}: {seen}\n") for i in (0, 1)])
    return steps


def _rewards(ratings: Sequence[EpisodeRating]) -> tuple[list[Reward], str]:
    """Per agent (overall, scores incl. overall_score), averaged over samples; sample 0's reasoning."""
    rewards: list[Reward] = []
    first = min(ratings, key=lambda r: r.sample_index)
    comments = []
    for a in (0, 1):
        names = list(first.agents[a].dimensions)
        scores = {n: statistics.fmean(r.agents[a].dimensions[n].score for r in ratings) for n in names}
        overall = statistics.fmean(r.agents[a].overall for r in ratings)
        rewards.append((overall, {**scores, "overall_score": overall}))
        comments.append(
            f"Agent {a + 1} comments:\n"
            + "".join(f"{n}: {d.reasoning}\n" for n, d in first.agents[a].dimensions.items())
        )
    return rewards, "".join(comments)


def _pick_judge(
    record: EpisodeRecord, ratings: Sequence[EpisodeRating], judge: str | None
) -> list[EpisodeRating]:
    labels = sorted({r.judge for r in ratings})
    if judge is None and len(labels) > 1:
        raise DataError(f"episode {record.episode_id} has ratings by {labels}; choose one with judge=")
    chosen = judge if judge is not None else labels[0]
    picked = [r for r in ratings if r.judge == chosen]
    if len({r.rubric_version for r in picked}) > 1:
        raise DataError(f"episode {record.episode_id}: ratings by {chosen} mix rubric versions")
    return picked


def to_episode_log(
    record: EpisodeRecord,
    ratings: Sequence[EpisodeRating] = (),
    *,
    judge: str | None = None,
    agents: Mapping[str, AgentProfile] | None = None,
    rewards_prompt: str = "",
    allow_unrated: bool = False,
) -> EpisodeLogJSON:
    """One episode as an EpisodeLog. Unrated episodes are an error unless allow_unrated (rewards 0,
    as sotopia writes when its evaluator fails)."""
    ratings = [r for r in ratings if r.episode_id == record.episode_id]
    picked = _pick_judge(record, ratings, judge) if ratings else []
    if picked:
        rewards, reasoning = _rewards(picked)
    elif allow_unrated:
        rewards, reasoning = [0.0, 0.0], ""
    else:
        raise DataError(f"episode {record.episode_id} has no ratings{f' by {judge}' if judge else ''}")
    tags = record.tags
    return EpisodeLogJSON(
        pk=record.episode_id, environment=record.env_id, agents=list(record.agent_ids),
        tag=tags.get("tag") or ",".join(f"{k}={v}" for k, v in sorted(tags.items())),
        models=[picked[0].judge if picked else "", *record.models],
        messages=episode_messages(record, agents), reasoning=reasoning, rewards=rewards,
        rewards_prompt=rewards_prompt,
    )  # fmt: skip


def export_episode_logs(
    episodes: Iterable[EpisodeRecord],
    ratings: Iterable[EpisodeRating],
    path: str | Path,
    *,
    judge: str | None = None,
    agents: Mapping[str, AgentProfile] | None = None,
    rewards_prompt: Callable[[EpisodeRecord], str] | None = None,
    allow_unrated: bool = False,
) -> Path:
    """Write one EpisodeLog JSON object per line (load each with `EpisodeLog.model_validate_json`).

    `rewards_prompt(record)` may supply the judge prompt text (e.g. from judge.prompt)."""
    by_episode: dict[str, list[EpisodeRating]] = {}
    for r in ratings:
        by_episode.setdefault(r.episode_id, []).append(r)
    lines = [
        to_episode_log(
            rec, by_episode.get(rec.episode_id, []), judge=judge, agents=agents,
            rewards_prompt=rewards_prompt(rec) if rewards_prompt else "", allow_unrated=allow_unrated,
        ).model_dump_json()
        for rec in episodes
    ]  # fmt: skip
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
