"""Rate episodes with one or several judge models, and summarise several samples per episode.

Every episode's judge request goes to a judge model in one generate() call, so the backend can batch
(hf) or run concurrently (openai) across the whole set. A judgement that fails (backend error, output
that does not parse) is reported and not stored, so a re-run retries exactly those.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from time import perf_counter
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from ..data.profiles import AgentProfile
from ..errors import ConfigError, DataError, SotopiaPiError
from ..llm.base import LLM
from ..llm.cache import model_hash, request_key
from ..llm.types import LLMRequest, LLMResponse
from ..sim.episode import EpisodeRecord
from ..store.keys import content_hash
from ..strict import StrictModel
from .official import official_rubric_version, rate_official
from .prompt import judge_request
from .ratings import EpisodeRating, RatingFailure, RatingKey, RatingStore, parse_judgement
from .rubric import DIMENSION_NAMES, REASONING_MAX_CHARS, RUBRIC_VERSION

log = logging.getLogger(__name__)

# Not a paper setting (its judge is greedy): several greedy samples would be identical.
SAMPLED_TEMPERATURE = 1.0


class JudgeConfig(StrictModel):
    """SOTOPIA-EVAL settings (the `judge` block of a params file). Paper: one sample at temperature 0."""

    samples: int = Field(1, ge=1)
    temperature: float | None = Field(None, ge=0.0, description="None: 0 for one sample, 1 for several")
    reasoning_max_chars: int | None = Field(
        REASONING_MAX_CHARS, ge=16,
        description="cap on each dimension's reasoning (schema maxLength); null = uncapped, as SOTOPIA's evaluator")

    @property
    def sampling_temperature(self) -> float:
        """The temperature judgements are sampled at (see judge_temperature)."""
        return judge_temperature(self.samples, self.temperature)


def judge_temperature(samples: int, temperature: float | None) -> float:
    """The paper's judge is greedy (0.0); several samples need sampling to differ."""
    if samples < 1:
        raise ConfigError(f"judge samples must be >= 1, got {samples}")
    if temperature is None:
        return 0.0 if samples == 1 else SAMPLED_TEMPERATURE
    if samples > 1 and temperature == 0.0:
        raise ConfigError(f"{samples} judge samples at temperature 0 would be identical; set temperature > 0")
    return temperature


def rubric_version_for(reasoning_max_chars: int | None = REASONING_MAX_CHARS) -> str:
    """The rubric version of ratings made with this reasoning cap (the default keeps the plain version),
    so ratings under another cap never count as done for this one."""
    if reasoning_max_chars == REASONING_MAX_CHARS:
        return RUBRIC_VERSION
    if reasoning_max_chars is None:
        return f"{RUBRIC_VERSION}/uncapped"
    return f"{RUBRIC_VERSION}/reasoning{reasoning_max_chars}"


def rating_version(record: EpisodeRecord, reasoning_max_chars: int | None = REASONING_MAX_CHARS) -> str:
    """The rubric version a rating of `record` gets: the official package's for sotopia-style
    episodes (rated by its own evaluator), else the project rubric's."""
    return official_rubric_version(record, reasoning_max_chars) or rubric_version_for(reasoning_max_chars)


class PlannedRating(NamedTuple):
    """One judgement to have: the episode, the sample, the exact request (None for sotopia-style
    episodes: the package's evaluator writes it) and the rating's key."""

    record: EpisodeRecord
    sample: int
    request: LLMRequest | None
    key: RatingKey


def plan_ratings(
    episodes: Sequence[EpisodeRecord],
    judge: LLM,
    *,
    agents: Mapping[str, AgentProfile] | None,
    samples: int,
    temperature: float,
    reasoning_max_chars: int | None,
    reformatter: LLM | None = None,
) -> list[PlannedRating]:
    """Every (episode, sample) judgement of `judge`, keyed by the judge's identity and the full request
    (the rubric prompt with the episode's transcript, schema, temperature, seed): the same key as the
    response cache's, so a rating is reused exactly when its answer would be. A sotopia-style episode's
    request is the package's (pinned by its version), so its key hashes the judge, the reformatting
    model, temperature, seed and sample instead."""
    label = judge.spec.label
    model = model_hash(judge.identity())
    fixer = model_hash(reformatter.identity()) if reformatter is not None else None
    out = []
    for rec in episodes:
        version = rating_version(rec, reasoning_max_chars)
        for s in range(samples):
            if official_rubric_version(rec, reasoning_max_chars):
                request = None
                unit = content_hash({"judge": model, "reformatter": fixer, "version": version, "episode": rec.episode_id,
                                     "temperature": temperature, "seed": rec.seed, "sample": s}, 24)
            else:
                request = judge_request(rec, agents, temperature=temperature, sample_index=s, seed=rec.seed,
                                        reasoning_max_chars=reasoning_max_chars)
                unit = request_key(model, request)[:24]
            out.append(PlannedRating(rec, s, request, RatingKey(rec.episode_id, label, version, s, unit)))
    return out


def _to_rating(planned: PlannedRating, response: LLMResponse, temperature: float) -> EpisodeRating:
    record, key = planned.record, planned.key
    where = f"judge {key.judge} on episode {record.episode_id} (sample {planned.sample})"
    if not response.ok:
        raise DataError(f"{where}: {response.error}")
    obj = response.parsed
    if obj is None:
        try:
            obj = json.loads(response.text)
        except ValueError:
            raise DataError(f"{where}: output is not JSON (finish_reason={response.finish_reason})") from None
    agents = parse_judgement(obj, where)
    return EpisodeRating(
        episode_id=record.episode_id, judge=key.judge, rubric_version=key.rubric_version,
        sample_index=planned.sample, temperature=temperature, agents=agents, unit=key.unit,
        prompt_tokens=response.prompt_tokens, completion_tokens=response.completion_tokens,
        latency_s=response.latency_s, cached=response.cached,
    )  # fmt: skip


def _failure(key: RatingKey, error: str) -> RatingFailure:
    return RatingFailure(episode_id=key.episode_id, judge=key.judge, rubric_version=key.rubric_version,
                         sample_index=key.sample_index, unit=key.unit, error=error.split(": ", 1)[-1])


def _judge_with(
    llm: LLM,
    todo: list[PlannedRating],
    temperature: float,
    progress: bool,
    agents: Mapping[str, AgentProfile] | None,
    reasoning_max_chars: int | None,
    reformatter: LLM | None,
) -> tuple[list[EpisodeRating], list[RatingFailure]]:
    """The dispatch point between the two evaluators: sotopia-style episodes go to the official
    package's evaluator (judge/official.py), the rest to the project's judge prompt in one batch."""
    official = {(p.record.episode_id, p.sample): p for p in todo if p.request is None}
    todo = [p for p in todo if p.request is not None]
    ratings, failures = [], []
    if official:
        done, failed = rate_official([(p.record, p.sample) for p in official.values()], llm, agents=agents,
                                     temperature=temperature, reasoning_max_chars=reasoning_max_chars,
                                     reformatter=reformatter)
        for r in done:
            ratings.append(r.model_copy(update={"unit": official[(r.episode_id, r.sample_index)].key.unit}))
        failures += [_failure(official[(rec.episode_id, s)].key, error) for rec, s, error in failed]
    if not todo:
        return ratings, failures
    responses = llm.generate([p.request for p in todo], progress=progress)
    for planned, resp in zip(todo, responses, strict=True):
        try:
            ratings.append(_to_rating(planned, resp, temperature))
        except SotopiaPiError as e:
            log.warning("%s", e)
            failures.append(_failure(planned.key, str(e)))
    return ratings, failures


def _judge_all(
    episodes: Sequence[EpisodeRecord],
    judges: list[LLM],
    have: Mapping[RatingKey, EpisodeRating],
    *,
    agents: Mapping[str, AgentProfile] | None,
    samples: int,
    temperature: float,
    progress: bool,
    reasoning_max_chars: int | None,
    reformatter: LLM | None,
) -> tuple[dict[RatingKey, EpisodeRating], list[EpisodeRating], list[RatingFailure], set[RatingKey]]:
    """(every wanted rating that is had by key, the new ones, the failures, every wanted key), asking
    only what `have` lacks."""
    out: dict[RatingKey, EpisodeRating] = {}
    new: list[EpisodeRating] = []
    failed: list[RatingFailure] = []
    wanted: set[RatingKey] = set()
    for llm in judges:
        todo = []
        for planned in plan_ratings(episodes, llm, agents=agents, samples=samples, temperature=temperature,
                                    reasoning_max_chars=reasoning_max_chars, reformatter=reformatter):
            wanted.add(planned.key)
            if planned.key in have:
                out[planned.key] = have[planned.key]
            else:
                todo.append(planned)
        if todo:
            ratings, failures = _judge_with(llm, todo, temperature, progress, agents, reasoning_max_chars, reformatter)
            out.update((r.key, r) for r in ratings)
            new += ratings
            failed += failures
    return out, new, failed, wanted


def judge_episodes(
    episodes: Sequence[EpisodeRecord],
    judge: LLM | Sequence[LLM],
    *,
    agents: Mapping[str, AgentProfile] | None = None,
    samples: int = 1,
    temperature: float | None = None,
    store: RatingStore | None = None,
    progress: bool = True,
    reasoning_max_chars: int | None = REASONING_MAX_CHARS,
    reformatter: LLM | None = None,
    retain: bool = False,
) -> list[EpisodeRating]:
    """SOTOPIA-EVAL ratings of every episode by every judge, `samples` each.

    `reasoning_max_chars` caps each dimension's reasoning (a small judge model on a CPU spends most
    of its time writing it); a non-default cap is part of the ratings' rubric version.
    Sotopia-style episodes are rated by the official package's evaluator (see `rating_version`),
    `reformatter` (default: the judge) rewriting its output when it does not parse.

    `agents` (SotopiaData.agents) is needed only for records that do not carry their profiles.
    With a `store`, ratings already there under the same key (episode, judge label, rubric version,
    sample, and the hash of the judge's identity and request; see `plan_ratings`) are not asked again,
    new ones are appended and failures go to the store's failures file; with `retain`, ratings and
    failures under other keys (other settings) move to the store's `superseded/`. Returns all ratings of these
    episodes by these judges and samples, stored and new, in episode order; failures are logged and
    summarised, not returned.
    """
    judges = [judge] if isinstance(judge, LLM) else list(judge)
    temperature = judge_temperature(samples, temperature)
    labels = [j.spec.label for j in judges]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"judge models must have distinct labels, got {labels}")
    have = {r.key: r for r in store.records()} if store is not None else {}
    start = perf_counter()
    out, new, failed, wanted = _judge_all(episodes, judges, have, agents=agents, samples=samples,
                                          temperature=temperature, progress=progress,
                                          reasoning_max_chars=reasoning_max_chars, reformatter=reformatter)
    if store is not None:
        store.extend(new)
        store.extend_failures(failed)
        if retain:
            store.retain(wanted)
    if progress:
        print(
            f"judged {len(episodes)} episodes x {samples} sample(s) x {len(judges)} judge(s): "
            f"{len(new)} new, {len(out) - len(new)} already rated, {len(failed)} failed, "
            f"{perf_counter() - start:.1f}s"
        )
    order = {e.episode_id: i for i, e in enumerate(episodes)}
    return sorted(out.values(), key=lambda r: (order[r.episode_id], labels.index(r.judge), r.sample_index))


class ScoreStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    mean: float
    std: float  # sample standard deviation over judge samples; 0 for a single sample
    n: int


class AgentSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    dimensions: dict[str, ScoreStats]
    overall: ScoreStats


class RatingSummary(BaseModel):
    """Mean and spread over the judge samples of one episode by one judge model."""

    model_config = ConfigDict(frozen=True)

    episode_id: str
    judge: str
    rubric_version: str
    samples: int
    agents: tuple[AgentSummary, AgentSummary]


def _stats(values: list[float]) -> ScoreStats:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return ScoreStats(mean=statistics.fmean(values), std=std, n=len(values))


def summarize_samples(ratings: Iterable[EpisodeRating]) -> list[RatingSummary]:
    """One summary per (episode, judge, rubric version); judges are never averaged together."""
    groups: dict[tuple[str, str, str], list[EpisodeRating]] = defaultdict(list)
    for r in ratings:
        groups[(r.episode_id, r.judge, r.rubric_version)].append(r)
    out = []
    for (episode_id, judge, version), group in groups.items():
        per_agent = []
        for a in (0, 1):
            dims = {n: _stats([float(r.agents[a].scores[n]) for r in group]) for n in DIMENSION_NAMES}
            per_agent.append(
                AgentSummary(dimensions=dims, overall=_stats([r.agents[a].overall for r in group]))
            )
        out.append(
            RatingSummary(
                episode_id=episode_id,
                judge=judge,
                rubric_version=version,
                samples=len(group),
                agents=(per_agent[0], per_agent[1]),
            )  # fmt: skip
        )
    return out


def judge_into_stores(
    groups: Sequence[tuple[Sequence[EpisodeRecord], RatingStore]],
    judge: LLM,
    *,
    agents: Mapping[str, AgentProfile] | None = None,
    samples: int = 1,
    temperature: float | None = None,
    progress: bool = True,
    reasoning_max_chars: int | None = REASONING_MAX_CHARS,
    reformatter: LLM | None = None,
    retain: bool = False,
) -> list[list[EpisodeRating]]:
    """Judge the episodes of several files in ONE batch (decoding costs much less per token in a large
    batch than alone: bench/llm_throughput.py measures tokens/s by batch size), each rating (and
    failure) appended to its own file's store (with `retain`, each store keeps only its ratings and
    failures under the current keys, the rest moving to `superseded/`); returns every group's ratings
    under the current keys (see `plan_ratings`)."""
    temperature = judge_temperature(samples, temperature)
    have: dict[RatingKey, EpisodeRating] = {}
    owner: dict[str, int] = {}
    for gi, (episodes, store) in enumerate(groups):
        have |= {r.key: r for r in store.records()}
        owner |= {rec.episode_id: gi for rec in episodes}
    episodes = [rec for eps, _ in groups for rec in eps]
    start = perf_counter()
    out, new, failed, wanted = _judge_all(episodes, [judge], have, agents=agents, samples=samples,
                                          temperature=temperature, progress=progress,
                                          reasoning_max_chars=reasoning_max_chars, reformatter=reformatter)
    for gi, (_, store) in enumerate(groups):
        store.extend(r for r in new if owner[r.episode_id] == gi)
        store.extend_failures(f for f in failed if owner[f.episode_id] == gi)
        if retain:
            store.retain({k for k in wanted if owner[k.episode_id] == gi})
    if progress and (new or failed):
        print(f"judged {len(episodes)} episodes in {len(groups)} files: {len(new)} new, "
              f"{len(out) - len(new)} already rated, {len(failed)} failed, {perf_counter() - start:.1f}s")
    return [[r for r in out.values() if owner[r.episode_id] == gi] for gi in range(len(groups))]
