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
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..llm.base import LLM
from ..llm.cache import model_hash
from ..llm.schema import parse_json_output
from ..llm.types import LLMRequest, LLMResponse, Message, SamplingParams
from ..store.keys import content_hash, result_fields
from .episode import AgentAction, EndReason, EpisodeRecord, Turn
from .episode_store import EpisodeFailure, EpisodeStore, RunSummary
from .prompts import DEFAULT_PROMPT_VERSION, action_schema, get_style, render_prompt
from .rules import EpisodeSetup, RuleConfig, agent_to_move, allowed_actions, end_reason
from .style import SotopiaStyle, style_version
from .visibility import Visibility


class EpisodeSpec(BaseModel):
    """One episode to play: the setup, which model label plays each position, a seed and tags."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    setup: EpisodeSetup
    models: tuple[str, str] = Field(description="keys of the `models` mapping, per agent position")
    seed: int = 0
    tags: dict[str, str] = Field(default_factory=dict)


class RunConfig(BaseModel):
    """How episodes are played. Paper setting: agents sample at temperature 1.0 and decode free text
    under the format instructions; an output that does not parse is rewritten by a reformatting model
    and, if that fails too, becomes `none` (SOTOPIA's agent, sotopia/generation_utils/generate.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # Fields that change how episodes are scheduled, never what they contain: left out of episode ids.
    EXECUTION_ONLY: ClassVar[frozenset[str]] = frozenset(
        {"progress", "max_live_episodes", "chained", "use_sessions"})

    prompts: Literal["project", "sotopia"] = Field(
        "project",
        description="project: the project's versioned prompts and runner; sotopia: the official package's "
        "agents, environment and evaluator, through the project's server",
    )
    sotopia: SotopiaStyle = SotopiaStyle()
    rules: RuleConfig = RuleConfig()
    visibility: Visibility = Field(Visibility.official, description="what agents see of the setup (sim.visibility)")
    prompt_version: str = DEFAULT_PROMPT_VERSION
    sampling: SamplingParams = SamplingParams(temperature=1.0, max_tokens=160)
    constrained: bool = Field(
        True,
        description="decode actions under their JSON schema, so every output parses (small models need it); "
        "false: free text under the format instructions, as in the paper",
    )
    max_argument_chars: int | None = Field(300, ge=1, description="maxLength of the action argument (constrained decoding)")
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


def episode_id(spec: EpisodeSpec, config: RunConfig, identities: Mapping[str, str],
               reformatter: str | None = None) -> str:
    """A hash of everything that shapes the episode, so a re-run recognises finished episodes (and hits
    the response cache) but never reuses one made under other settings: the full setup (scenario,
    profiles, goals, relationship, ...), each seat's label and model identity (`identities`: label ->
    model hash), the seed and tags, every result-shaping field of the simulation config (so a field
    added to it later counts too) and the first prompt of each seat as rendered (so a changed prompt
    template counts even without a new prompt_version) and the reformatting model's hash (`reformatter`;
    None: each turn's own model rewrites its output)."""
    key = {
        "v": 2,
        "setup": spec.setup,
        "models": [[label, identities[label]] for label in spec.models],
        "seed": spec.seed,
        "tags": spec.tags,
        "simulation": result_fields(config),
        "prompts": first_prompts(spec, config),
        "reformatter": reformatter,
    }
    return f"ep-{content_hash(key, 20)}"


def first_prompts(spec: EpisodeSpec, config: RunConfig) -> list[str] | str:
    """Hashes of each seat's first prompt as rendered; in the sotopia style the package renders them
    (in a subprocess, too costly per id), so its pinned version stands for them."""
    if config.prompts == "sotopia":
        return style_version(config)
    return [content_hash(render_prompt(spec.setup, agent, [], config.prompt_version, config.visibility))
            for agent in (0, 1)]


def episode_ids(specs: Sequence[EpisodeSpec], models: Mapping[str, LLM], config: RunConfig,
                reformatter: LLM | None = None) -> list[str]:
    """The id of each spec (what `run_episodes` plays them as, with the same `reformatter`), in order."""
    unknown = sorted({m for s in specs for m in s.models} - set(models))
    if unknown:
        raise ConfigError(f"episode specs name model(s) {unknown} not in models {sorted(models)}")
    used = {m for s in specs for m in s.models}
    identities = model_hashes({label: llm for label, llm in models.items() if label in used})
    fixer = model_hash(reformatter.identity()) if reformatter is not None else None
    return [episode_id(spec, config, identities, fixer) for spec in specs]


def protocol(config: RunConfig) -> dict[str, str]:
    """The protocol options an episode is played under, recorded with it. In the sotopia style the
    package decides visibility and ending (the official behaviour by construction)."""
    if config.prompts == "sotopia":
        return {"visibility": "official", "ending": "official",
                "decoding": "constrained" if config.sotopia.json_schema else "free", "unparseable": "reformat_then_none"}
    return {"visibility": str(config.visibility), "ending": str(config.rules.ending),
            "decoding": "constrained" if config.constrained else "free", "unparseable": "reformat_then_none"}


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
    schema = action_schema(allowed_actions(live.turns), config.max_argument_chars) if config.constrained else None
    return LLMRequest(
        messages=render_prompt(live.spec.setup, agent, live.turns, config.prompt_version, config.visibility),
        json_schema=schema,
        sampling=config.sampling,
        seed=turn_seed(live.spec.seed, i),
        sample_index=attempt,
        session=f"{live.episode_id}/{agent}" if config.use_sessions else None,
    )


# The official reformatting call (format_bad_output) runs at obtain_chain's default temperature, 0.7.
REFORMAT_TEMPERATURE = 0.7
_REFORMAT_SYSTEM = (
    "You repair the format of a reply that a program could not parse. Rewrite it as one JSON object "
    '{"action_type": ..., "argument": ...} and nothing else, without adding or removing any information.'
)


def _reformat_request(live: _Live, raw: str, config: RunConfig) -> LLMRequest:
    """Ask the reformatting model to rewrite an unparseable action (the official agent asks GPT-3.5
    with its own reformatting prompt; this is the project's wording of the same request)."""
    allowed = allowed_actions(live.turns)
    user = (f"Reply to rewrite:\n{raw}\n\naction_type must be one of: {', '.join(allowed)}. The argument is "
            "what is said, the gesture or the action; empty for none and leave.")
    return LLMRequest(
        messages=(Message(role="system", content=_REFORMAT_SYSTEM), Message(role="user", content=user)),
        json_schema=action_schema(allowed, config.max_argument_chars) if config.constrained else None,
        sampling=SamplingParams(temperature=REFORMAT_TEMPERATURE, max_tokens=config.sampling.max_tokens),
        seed=turn_seed(live.spec.seed, len(live.turns)),
    )


def _parse_action(live: _Live, response: LLMResponse) -> AgentAction | None:
    """The action in a response, or None when it holds none allowed at this turn."""
    obj = response.parsed
    if obj is None:
        obj, _ = parse_json_output(response.text, action_schema(allowed_actions(live.turns)), surrounding_text=True)
    if obj is None:
        return None
    try:
        action = AgentAction.model_validate(obj)
    except ValidationError:
        return None
    return action if action.action_type in allowed_actions(live.turns) else None


class _Unparsed(str):
    """An agent's raw output that held no valid action: it goes to the reformatting model next."""


def _turn(live: _Live, action: AgentAction, response: LLMResponse, **extra: Any) -> Turn:
    return Turn(
        index=len(live.turns),
        agent=live.agent,
        action=action,
        raw=response.text,
        prompt_tokens=response.prompt_tokens,
        completion_tokens=response.completion_tokens,
        latency_s=response.latency_s,
        cached=response.cached,
        **extra,
    )


def _turn_or_error(live: _Live, response: LLMResponse) -> Turn | _Unparsed | str:
    """A parsed turn, the raw text to reformat, or a backend error (str) to retry."""
    if response.error is not None:
        return response.error
    action = _parse_action(live, response)
    return _turn(live, action, response) if action is not None else _Unparsed(response.text)


def _reformatted(live: _Live, first: LLMResponse, response: LLMResponse) -> Turn:
    """The turn after a reformatting attempt: its action if it parses, else `none` (the episode goes on)."""
    action = _parse_action(live, response) if response.ok else None
    text = response.text if response.ok else f"<error: {response.error}>"
    if action is None:
        return _turn(live, AgentAction(action_type="none", argument=""), first, parse="unparseable", reformatted=text)
    return _turn(live, action, first, parse="reformatted", reformatted=text)


def _play_group(
    llm: LLM, group: list[_Live], config: RunConfig, reformatter: LLM | None
) -> dict[int, Turn | str]:
    """Next turn of every episode in `group` (all on one model): one batch, then one per retry of a
    backend error, then one batch to the reformatting model for outputs that did not parse."""
    outcome: dict[int, Turn | _Unparsed | str] = {}
    first: dict[int, LLMResponse] = {}
    pending = list(range(len(group)))
    for attempt in range(config.retries + 1):
        responses = llm.generate([_request(group[i], config, attempt) for i in pending])
        for i, response in zip(pending, responses, strict=True):
            outcome[i], first[i] = _turn_or_error(group[i], response), response
        pending = [i for i in pending if type(outcome[i]) is str]
        if not pending:
            break
    unparsed = [i for i in outcome if isinstance(outcome[i], _Unparsed)]
    if unparsed:
        fixer = reformatter or llm
        fixes = fixer.generate([_reformat_request(group[i], outcome[i], config) for i in unparsed])
        for i, fix in zip(unparsed, fixes, strict=True):
            outcome[i] = _reformatted(group[i], first[i], fix)
    return outcome  # type: ignore[return-value]


def _step(
    live: list[_Live], models: Mapping[str, LLM], config: RunConfig, reformatter: LLM | None
) -> list[tuple[_Live, Turn | str]]:
    groups: dict[str, list[_Live]] = {}
    for ep in live:
        groups.setdefault(ep.spec.models[ep.agent], []).append(ep)
    results = []
    for label, group in groups.items():
        outcome = _play_group(models[label], group, config, reformatter)
        results += [(group[i], outcome[i]) for i in range(len(group))]
    return results


def _record(ep: _Live, reason: str, config: RunConfig) -> EpisodeRecord:
    return episode_record(ep.episode_id, ep.spec, ep.turns, reason, config, time.perf_counter() - ep.started)


def episode_record(
    episode_id: str, spec: EpisodeSpec, turns: list[Turn], reason: EndReason, config: RunConfig, duration_s: float
) -> EpisodeRecord:
    s = spec.setup
    return EpisodeRecord(
        episode_id=episode_id,
        env_id=s.env_id,
        combo_id=s.combo_id,
        codename=s.codename,
        scenario=s.scenario,
        agent_ids=s.agent_ids,
        agent_names=s.agent_names,
        goals=s.goals,
        models=spec.models,
        prompt_version=style_version(config),
        seed=spec.seed,
        turns=turns,
        end_reason=reason,
        tags=spec.tags,
        duration_s=round(duration_s, 3),
        prompt_tokens=sum(t.prompt_tokens for t in turns),
        completion_tokens=sum(t.completion_tokens for t in turns),
        agent_profiles=s.agents,
        relationship=s.relationship,
        protocol=protocol(config),
    )


def _failure(ep: _Live, error: str) -> EpisodeFailure:
    s = ep.spec.setup
    return EpisodeFailure(
        episode_id=ep.episode_id, env_id=s.env_id, agent_ids=s.agent_ids, models=ep.spec.models,
        turn=len(ep.turns), error=error, tags=ep.spec.tags,
    )  # fmt: skip


def _todo(
    specs: Sequence[EpisodeSpec], models: Mapping[str, LLM], config: RunConfig, reformatter: LLM | None
) -> list[tuple[str, EpisodeSpec]]:
    if config.prompts == "project":
        get_style(config.prompt_version)
    ids: dict[str, EpisodeSpec] = {}
    for spec, eid in zip(specs, episode_ids(specs, models, config, reformatter), strict=True):
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
        if isinstance(outcome, str):
            self.book(_failure(ep, outcome))
            return False
        ep.turns.append(outcome)
        self.summary.add_turn(outcome)
        reason = end_reason(ep.turns, self.config.rules)
        if reason is not None:
            self.book(_record(ep, reason, self.config), turns_booked=True)
            return False
        self._show()
        return True

    def book(self, done: EpisodeRecord | EpisodeFailure, turns_booked: bool = False) -> None:
        """Book a finished episode (its turns too, unless they were booked one by one) or a failure."""
        if isinstance(done, EpisodeFailure):
            self.summary.add_failure(done)
            if self.store is not None:
                self.store.append_failure(done)
        else:
            if not turns_booked:
                for turn in done.turns:
                    self.summary.add_turn(turn)
            if self.store is not None:
                self.store.append(done)
            self.records.append(done)
            self.summary.add_episode(done)
        self.bar.update(1)
        self._show()

    def _show(self) -> None:
        self.summary.duration_s = time.perf_counter() - self.t0
        s = self.summary
        self.bar.set_postfix(turns=s.turns, tok_s=f"{s.tokens_per_s:.0f}", failed=s.failed, refresh=False)


def _in_rounds(
    queue: deque[tuple[str, EpisodeSpec]], models: Mapping[str, LLM], tally: _Tally, reformatter: LLM | None
) -> None:
    """Lockstep: every live episode's next turn, one batch per model, round after round (needed when
    the two agents of an episode are different models)."""
    config, live = tally.config, []
    while queue or live:
        while queue and len(live) < config.max_live_episodes:
            eid, spec = queue.popleft()
            live.append(_Live(spec=spec, episode_id=eid))
        live = [ep for ep, outcome in _step(live, models, config, reformatter) if tally.settle(ep, outcome)]


def _chained(queue: deque[tuple[str, EpisodeSpec]], llm: LLM, tally: _Tally, reformatter: LLM | None) -> None:
    """Episodes whose two agents are one model: each next turn or retry is asked as soon as the last
    answer is out, and a finished episode's place goes to the next in the queue, all in one
    generate_chained call, so no episode waits for the slowest reply of a round.

    An output that holds no valid action goes to the reformatting model: within the chain when that
    is the same model; otherwise the episode is parked, and once the chain drains the parked outputs
    are reformatted in one batch and their episodes go on in the next chain."""
    config = tally.config
    waiting: deque[_Live] = deque()  # episodes to (re)start: continuing ones first, then new ones
    parked: list[tuple[_Live, LLMResponse]] = []
    live = 0
    inline = reformatter is None or reformatter is llm
    Key = tuple[_Live, LLMResponse | None]  # (episode, its unparsed first response while reformatting)

    def start() -> list[tuple[Key, LLMRequest]]:
        nonlocal live
        out = []
        while (waiting or queue) and live < config.max_live_episodes:
            if waiting:
                ep = waiting.popleft()
            else:
                eid, spec = queue.popleft()
                ep = _Live(spec=spec, episode_id=eid)
            out.append(((ep, None), _request(ep, config, 0)))
            live += 1
        return out

    def then(key: Key, response: LLMResponse) -> list[tuple[Key, LLMRequest]]:
        nonlocal live
        ep, unparsed = key
        outcome = _reformatted(ep, unparsed, response) if unparsed is not None else _turn_or_error(ep, response)
        if isinstance(outcome, _Unparsed):
            if inline:
                return [((ep, response), _reformat_request(ep, outcome, config))]
            parked.append((ep, response))
            live -= 1
            return start()
        if type(outcome) is str and ep.attempt < config.retries:
            ep.attempt += 1
            return [((ep, None), _request(ep, config, ep.attempt))]
        ep.attempt = 0
        if tally.settle(ep, outcome):
            return [((ep, None), _request(ep, config, 0))]
        live -= 1
        return start()

    while True:
        llm.generate_chained(start(), then)
        if not parked:
            return
        fixer = reformatter or llm
        fixes = fixer.generate([_reformat_request(ep, first.text, config) for ep, first in parked])
        for (ep, first), fix in zip(parked, fixes, strict=True):
            if tally.settle(ep, _reformatted(ep, first, fix)):
                waiting.append(ep)
        parked.clear()


def _play_project(
    left: list[tuple[str, EpisodeSpec]], models: Mapping[str, LLM], tally: _Tally, reformatter: LLM | None
) -> None:
    self_play: dict[str, deque[tuple[str, EpisodeSpec]]] = {}
    paired: deque[tuple[str, EpisodeSpec]] = deque()
    for eid, spec in left:
        if tally.config.chained and spec.models[0] == spec.models[1]:
            self_play.setdefault(spec.models[0], deque()).append((eid, spec))
        else:
            paired.append((eid, spec))
    for label, queue in self_play.items():
        _chained(queue, models[label], tally, reformatter)
    _in_rounds(paired, models, tally, reformatter)


def _play_official(left: list[tuple[str, EpisodeSpec]], models: Mapping[str, LLM], tally: _Tally,
                   reformatter: LLM | None) -> None:
    """The sotopia style: the official package plays the whole batch (imported here: it starts a
    server and a subprocess, which the project style never needs)."""
    from .official import play_official

    config = tally.config

    def make_record(eid: str, spec: EpisodeSpec, turns: list[Turn], reason: EndReason, seconds: float) -> EpisodeRecord:
        return episode_record(eid, spec, turns, reason, config, seconds)

    play_official(left, models, config, make_record, tally.book, reformatter)


def run_episodes(
    specs: Sequence[EpisodeSpec],
    models: Mapping[str, LLM],
    config: RunConfig | None = None,
    store: EpisodeStore | None = None,
    reformatter: LLM | None = None,
) -> RunResult:
    """Play every spec not already in `store`, up to `max_live_episodes` at a time.

    `reformatter` rewrites outputs that hold no valid action (None: the turn's own model).
    Project style: episodes whose two agents are one model run chained (config.chained, the default);
    pairings of two models run in rounds. Sotopia style (config.prompts): the official package plays
    them all."""
    config = config or RunConfig()
    todo = _todo(specs, models, config, reformatter)
    done = store.completed_ids() if store is not None else set()
    left = [(eid, s) for eid, s in todo if eid not in done]
    summary = RunSummary(requested=len(todo), skipped=len(todo) - len(left))
    with tqdm(total=len(left), desc="episodes", unit="ep", disable=not config.progress) as bar:
        tally = _Tally(store, summary, config, bar)
        if config.prompts == "sotopia":
            _play_official(left, models, tally, reformatter)
        else:
            _play_project(left, models, tally, reformatter)
    summary.duration_s = time.perf_counter() - tally.t0
    if config.progress:
        tqdm.write(str(summary))
    return RunResult(records=tally.records, summary=summary)
