"""The batched episode runner: many episodes at once, their turns batched per model.

Backends are fastest when handed many requests together (hf: one decode batch and a per-session
KV cache; openai: concurrent requests). Episodes whose two agents are one model run chained: each
next turn joins the backend's running batch as soon as the previous one is out (hf decodes them
all in one continuous batch). Pairings of two models run in rounds: every live episode's next turn,
one batch per model. Each finished episode is appended to the store at once, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..llm.base import LLM
from ..llm.cache import model_hash
from ..llm.types import LLMRequest, LLMResponse, SamplingParams
from ..store.keys import content_hash, result_fields
from .episode import AgentAction, EpisodeRecord, Turn
from .prompts import DEFAULT_PROMPT_VERSION, action_schema, get_style, render_prompt
from .rules import EpisodeSetup, RuleConfig, agent_to_move, allowed_actions, end_reason
from .store import EpisodeFailure, EpisodeStore, RunSummary


class EpisodeSpec(BaseModel):
    """One episode to play: the setup, which model label plays each position, a seed and tags."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    setup: EpisodeSetup
    models: tuple[str, str] = Field(description="keys of the `models` mapping, per agent position")
    seed: int = 0
    tags: dict[str, str] = Field(default_factory=dict)


class RunConfig(BaseModel):
    """How episodes are played. Paper setting: agents sample at temperature 1.0."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # Fields that change how episodes are scheduled, never what they contain: left out of episode ids.
    EXECUTION_ONLY: ClassVar[frozenset[str]] = frozenset(
        {"progress", "max_live_episodes", "chained", "use_sessions"})

    rules: RuleConfig = RuleConfig()
    prompt_version: str = DEFAULT_PROMPT_VERSION
    sampling: SamplingParams = SamplingParams(temperature=1.0, max_tokens=160)
    max_argument_chars: int | None = Field(300, ge=1, description="maxLength of the action argument")
    max_live_episodes: int = Field(16, ge=1, description="episodes played at once (batch size)")
    use_sessions: bool = Field(True, description="let the backend keep each agent's KV cache across turns")
    retries: int = Field(1, ge=0, description="extra attempts for a failed turn before giving up")
    chained: bool = Field(
        True,
        description="episodes of one model: ask each next turn as soon as the last is out, not in rounds",
    )
    progress: bool = True


class RunResult(BaseModel):
    records: list[EpisodeRecord] = Field(description="episodes completed by this call, in finishing order")
    summary: RunSummary


def model_hashes(models: Mapping[str, LLM]) -> dict[str, str]:
    """Label -> hash of the model's identity (weights, adapter, dtype, endpoint...), for episode ids."""
    return {label: model_hash(llm.identity()) for label, llm in models.items()}


def episode_id(spec: EpisodeSpec, config: RunConfig, identities: Mapping[str, str]) -> str:
    """A hash of everything that shapes the episode, so a re-run recognises finished episodes (and hits
    the response cache) but never reuses one made under other settings: the full setup (scenario,
    profiles, goals, relationship, ...), each seat's label and model identity (`identities`: label ->
    model hash), the seed and tags, every result-shaping field of the simulation config (so a field
    added to it later counts too) and the first prompt of each seat as rendered (so a changed prompt
    template counts even without a new prompt_version)."""
    key = {
        "v": 2,
        "setup": spec.setup,
        "models": [[label, identities[label]] for label in spec.models],
        "seed": spec.seed,
        "tags": spec.tags,
        "simulation": result_fields(config),
        "prompts": [content_hash(render_prompt(spec.setup, agent, [], config.prompt_version))
                    for agent in (0, 1)],
    }
    return f"ep-{content_hash(key, 20)}"


def episode_ids(specs: Sequence[EpisodeSpec], models: Mapping[str, LLM], config: RunConfig) -> list[str]:
    """The id of each spec (what `run_episodes` plays them as), in order."""
    unknown = sorted({m for s in specs for m in s.models} - set(models))
    if unknown:
        raise ConfigError(f"episode specs name model(s) {unknown} not in models {sorted(models)}")
    used = {m for s in specs for m in s.models}
    identities = model_hashes({label: llm for label, llm in models.items() if label in used})
    return [episode_id(spec, config, identities) for spec in specs]


def turn_seed(seed: int, turn_index: int) -> int:
    digest = hashlib.sha256(f"{seed}/turn/{turn_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def make_specs(
    setups: Sequence[EpisodeSetup],
    models: tuple[str, str],
    seed: int = 0,
    tags: Mapping[str, str] | None = None,
) -> list[EpisodeSpec]:
    """One spec per setup with the same model pairing; seeds seed, seed+1, ... in setup order."""
    return [
        EpisodeSpec(setup=s, models=models, seed=seed + i, tags=dict(tags or {}))
        for i, s in enumerate(setups)
    ]


@dataclass
class _Live:
    spec: EpisodeSpec
    episode_id: str
    started: float = field(default_factory=time.perf_counter)
    turns: list[Turn] = field(default_factory=list)
    attempt: int = 0  # retries spent on the coming turn

    @property
    def agent(self) -> int:
        return agent_to_move(len(self.turns))


def _request(live: _Live, config: RunConfig, attempt: int) -> LLMRequest:
    i, agent = len(live.turns), live.agent
    return LLMRequest(
        messages=render_prompt(live.spec.setup, agent, live.turns, config.prompt_version),
        json_schema=action_schema(allowed_actions(live.turns), config.max_argument_chars),
        sampling=config.sampling,
        seed=turn_seed(live.spec.seed, i),
        sample_index=attempt,
        session=f"{live.episode_id}/{agent}" if config.use_sessions else None,
    )


def _turn_or_error(live: _Live, response: LLMResponse) -> Turn | str:
    if response.error is not None:
        return response.error
    obj = response.parsed
    if obj is None:
        try:
            obj = json.loads(response.text)
        except ValueError:
            return f"unparseable action ({response.finish_reason}): {response.text[:120]!r}"
    try:
        action = AgentAction.model_validate(obj)
    except ValidationError:
        return f"invalid action: {response.text[:120]!r}"
    if action.action_type not in allowed_actions(live.turns):
        return f"action type {action.action_type!r} not allowed at this turn"
    return Turn(
        index=len(live.turns),
        agent=live.agent,
        action=action,
        raw=response.text,
        prompt_tokens=response.prompt_tokens,
        completion_tokens=response.completion_tokens,
        latency_s=response.latency_s,
        cached=response.cached,
    )


def _play_group(llm: LLM, group: list[_Live], config: RunConfig) -> dict[int, Turn | str]:
    """Next turn of every episode in `group` (all on one model): one batch, then one per retry."""
    outcome: dict[int, Turn | str] = {}
    pending = list(range(len(group)))
    for attempt in range(config.retries + 1):
        responses = llm.generate([_request(group[i], config, attempt) for i in pending])
        for i, response in zip(pending, responses, strict=True):
            outcome[i] = _turn_or_error(group[i], response)
        pending = [i for i in pending if isinstance(outcome[i], str)]
        if not pending:
            break
    return outcome


def _step(live: list[_Live], models: Mapping[str, LLM], config: RunConfig) -> list[tuple[_Live, Turn | str]]:
    groups: dict[str, list[_Live]] = {}
    for ep in live:
        groups.setdefault(ep.spec.models[ep.agent], []).append(ep)
    results = []
    for label, group in groups.items():
        outcome = _play_group(models[label], group, config)
        results += [(group[i], outcome[i]) for i in range(len(group))]
    return results


def _record(ep: _Live, reason: str, config: RunConfig) -> EpisodeRecord:
    s = ep.spec.setup
    return EpisodeRecord(
        episode_id=ep.episode_id,
        env_id=s.env_id,
        combo_id=s.combo_id,
        codename=s.codename,
        scenario=s.scenario,
        agent_ids=s.agent_ids,
        agent_names=s.agent_names,
        goals=s.goals,
        models=ep.spec.models,
        prompt_version=config.prompt_version,
        seed=ep.spec.seed,
        turns=ep.turns,
        end_reason=reason,
        tags=ep.spec.tags,
        duration_s=round(time.perf_counter() - ep.started, 3),
        prompt_tokens=sum(t.prompt_tokens for t in ep.turns),
        completion_tokens=sum(t.completion_tokens for t in ep.turns),
        agent_profiles=s.agents,
        relationship=s.relationship,
        background_story=s.background_story,
    )


def _failure(ep: _Live, error: str) -> EpisodeFailure:
    s = ep.spec.setup
    return EpisodeFailure(
        episode_id=ep.episode_id, env_id=s.env_id, agent_ids=s.agent_ids, models=ep.spec.models,
        turn=len(ep.turns), error=error, tags=ep.spec.tags,
    )  # fmt: skip


def _todo(
    specs: Sequence[EpisodeSpec], models: Mapping[str, LLM], config: RunConfig
) -> list[tuple[str, EpisodeSpec]]:
    get_style(config.prompt_version)
    ids: dict[str, EpisodeSpec] = {}
    for spec, eid in zip(specs, episode_ids(specs, models, config), strict=True):
        if eid in ids:
            raise ConfigError(
                f"two specs give episode {eid} (scenario {spec.setup.env_id}, same characters, models, "
                "seed and tags); give them different seeds or tags"
            )
        ids[eid] = spec
    return list(ids.items())


class _Tally:
    """Where finished turns and episodes go, whichever way they were played: the store (at once, so a
    crash loses only episodes in flight), the summary, the returned records and the progress bar."""

    def __init__(self, store: EpisodeStore | None, summary: RunSummary, config: RunConfig, bar: Any) -> None:
        self.store, self.summary, self.config, self.bar = store, summary, config, bar
        self.records: list[EpisodeRecord] = []
        self.t0 = time.perf_counter()

    def settle(self, ep: _Live, outcome: Turn | str) -> bool:
        """Book a turn (or the error that ends the episode); True while the episode goes on."""
        going = False
        if isinstance(outcome, str):
            failure = _failure(ep, outcome)
            self.summary.add_failure(failure)
            if self.store is not None:
                self.store.append_failure(failure)
            self.bar.update(1)
        else:
            ep.turns.append(outcome)
            self.summary.add_turn(outcome)
            reason = end_reason(ep.turns, self.config.rules)
            if reason is None:
                going = True
            else:
                record = _record(ep, reason, self.config)
                if self.store is not None:
                    self.store.append(record)
                self.records.append(record)
                self.summary.add_episode(record)
                self.bar.update(1)
        self.summary.duration_s = time.perf_counter() - self.t0
        s = self.summary
        self.bar.set_postfix(turns=s.turns, tok_s=f"{s.tokens_per_s:.0f}", failed=s.failed, refresh=False)
        return going


def _in_rounds(queue: deque[tuple[str, EpisodeSpec]], models: Mapping[str, LLM], tally: _Tally) -> None:
    """Lockstep: every live episode's next turn, one batch per model, round after round (needed when
    the two agents of an episode are different models)."""
    config, live = tally.config, []
    while queue or live:
        while queue and len(live) < config.max_live_episodes:
            eid, spec = queue.popleft()
            live.append(_Live(spec=spec, episode_id=eid))
        live = [ep for ep, outcome in _step(live, models, config) if tally.settle(ep, outcome)]


def _chained(queue: deque[tuple[str, EpisodeSpec]], llm: LLM, tally: _Tally) -> None:
    """Episodes whose agents are one model: each next turn (or retry) is asked as soon as the last
    one is out, and a finished episode's place goes to the next in the queue, all in one
    generate_chained call, so no episode waits for the slowest reply of a round."""
    config = tally.config
    live = 0

    def start() -> list[tuple[_Live, LLMRequest]]:
        nonlocal live
        out = []
        while queue and live < config.max_live_episodes:
            eid, spec = queue.popleft()
            ep = _Live(spec=spec, episode_id=eid)
            out.append((ep, _request(ep, config, 0)))
            live += 1
        return out

    def then(ep: _Live, response: LLMResponse) -> list[tuple[_Live, LLMRequest]]:
        nonlocal live
        outcome = _turn_or_error(ep, response)
        if isinstance(outcome, str) and ep.attempt < config.retries:
            ep.attempt += 1
            return [(ep, _request(ep, config, ep.attempt))]
        ep.attempt = 0
        if tally.settle(ep, outcome):
            return [(ep, _request(ep, config, 0))]
        live -= 1
        return start()

    llm.generate_chained(start(), then)


def run_episodes(
    specs: Sequence[EpisodeSpec],
    models: Mapping[str, LLM],
    config: RunConfig | None = None,
    store: EpisodeStore | None = None,
) -> RunResult:
    """Play every spec not already in `store`, up to `max_live_episodes` at a time.

    Episodes whose two agents are one model run chained (config.chained, the default); pairings of
    two models run in rounds."""
    config = config or RunConfig()
    todo = _todo(specs, models, config)
    done = store.completed_ids() if store is not None else set()
    left = [(eid, s) for eid, s in todo if eid not in done]
    summary = RunSummary(requested=len(todo), skipped=len(todo) - len(left))
    self_play: dict[str, deque[tuple[str, EpisodeSpec]]] = {}
    paired: deque[tuple[str, EpisodeSpec]] = deque()
    for eid, spec in left:
        if config.chained and spec.models[0] == spec.models[1]:
            self_play.setdefault(spec.models[0], deque()).append((eid, spec))
        else:
            paired.append((eid, spec))
    with tqdm(total=len(left), desc="episodes", unit="ep", disable=not config.progress) as bar:
        tally = _Tally(store, summary, config, bar)
        for label, queue in self_play.items():
            _chained(queue, models[label], tally)
        _in_rounds(paired, models, tally)
    summary.duration_s = time.perf_counter() - tally.t0
    if config.progress:
        tqdm.write(str(summary))
    return RunResult(records=tally.records, summary=summary)
