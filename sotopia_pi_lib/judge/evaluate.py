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

from pydantic import BaseModel, ConfigDict

from ..data.profiles import AgentProfile
from ..errors import ConfigError, DataError, SotopiaPiError
from ..llm.base import LLM
from ..llm.types import LLMResponse
from ..sim.episode import EpisodeRecord
from .official import official_rubric_version, rate_official
from .prompt import judge_request
from .ratings import EpisodeRating, RatingKey, RatingStore, parse_judgement
from .rubric import DIMENSION_NAMES, REASONING_MAX_CHARS, RUBRIC_VERSION

log = logging.getLogger(__name__)

# Not a paper setting (its judge is greedy): several greedy samples would be identical.
SAMPLED_TEMPERATURE = 1.0


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


def rating_version(record: EpisodeRecord, reasoning_max_chars: int = REASONING_MAX_CHARS) -> str:
    """The rubric version a rating of `record` gets: the official package's for sotopia-style
    episodes (rated by its own evaluator), else the project rubric's."""
    return official_rubric_version(record, reasoning_max_chars) or rubric_version_for(reasoning_max_chars)


def _to_rating(
    record: EpisodeRecord, response: LLMResponse, judge: str, sample: int, temperature: float, version: str
) -> EpisodeRating:
    where = f"judge {judge} on episode {record.episode_id} (sample {sample})"
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
        episode_id=record.episode_id, judge=judge, rubric_version=version, sample_index=sample,
        temperature=temperature, agents=agents, prompt_tokens=response.prompt_tokens,
        completion_tokens=response.completion_tokens, latency_s=response.latency_s, cached=response.cached,
    )  # fmt: skip


def _judge_with(
    llm: LLM,
    todo: list[tuple[EpisodeRecord, int]],
    agents: Mapping[str, AgentProfile] | None,
    temperature: float,
    progress: bool,
    reasoning_max_chars: int | None,
    reformatter: LLM | None = None,
) -> tuple[list[EpisodeRating], list[str]]:
    """The dispatch point between the two evaluators: sotopia-style episodes go to the official
    package's evaluator (judge/official.py), the rest to the project's judge prompt."""
    official = [(rec, s) for rec, s in todo if official_rubric_version(rec, reasoning_max_chars)]
    todo = [(rec, s) for rec, s in todo if not official_rubric_version(rec, reasoning_max_chars)]
    ratings, failures = [], []
    if official:
        ratings, failures = rate_official(official, llm, agents=agents, temperature=temperature,
                                          reasoning_max_chars=reasoning_max_chars, reformatter=reformatter)
    if not todo:
        return ratings, failures
    label = llm.spec.label
    version = rubric_version_for(reasoning_max_chars)
    requests = [
        judge_request(rec, agents, temperature=temperature, sample_index=s, seed=rec.seed,
                      reasoning_max_chars=reasoning_max_chars)
        for rec, s in todo
    ]
    responses = llm.generate(requests, progress=progress)
    for (rec, s), resp in zip(todo, responses, strict=True):
        try:
            ratings.append(_to_rating(rec, resp, label, s, temperature, version))
        except SotopiaPiError as e:
            log.warning("%s", e)
            failures.append(str(e))
    return ratings, failures


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
) -> list[EpisodeRating]:
    """SOTOPIA-EVAL ratings of every episode by every judge, `samples` each.

    `reasoning_max_chars` caps each dimension's reasoning (a small judge model on a CPU spends most
    of its time writing it); a non-default cap is part of the ratings' rubric version.
    Sotopia-style episodes are rated by the official package's evaluator (see `rating_version`),
    `reformatter` (default: the judge) rewriting its output when it does not parse.

    `agents` (SotopiaData.agents) is needed only for records that do not carry their profiles.
    With a `store`, ratings already there (same episode, judge label, rubric version, sample) are not
    asked again, and new ones are appended. Returns all ratings of these episodes by these judges
    and samples, stored and new, in episode order; failures are logged and summarised, not returned.
    """
    judges = [judge] if isinstance(judge, LLM) else list(judge)
    temperature = judge_temperature(samples, temperature)
    labels = [j.spec.label for j in judges]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"judge models must have distinct labels, got {labels}")
    have = {r.key: r for r in store.read()} if store is not None else {}
    out: dict[RatingKey, EpisodeRating] = {}
    start, failed, new = perf_counter(), 0, 0
    for llm, label in zip(judges, labels, strict=True):
        todo = []
        for rec in episodes:
            for s in range(samples):
                key = RatingKey(rec.episode_id, label, rating_version(rec, reasoning_max_chars), s)
                if key in have:
                    out[key] = have[key]
                else:
                    todo.append((rec, s))
        if not todo:
            continue
        ratings, failures = _judge_with(llm, todo, agents, temperature, progress, reasoning_max_chars, reformatter)
        if store is not None:
            store.append(ratings)
        out.update((r.key, r) for r in ratings)
        failed, new = failed + len(failures), new + len(ratings)
    if progress:
        print(
            f"judged {len(episodes)} episodes x {samples} sample(s) x {len(judges)} judge(s): "
            f"{new} new, {len(out) - new} already rated, {failed} failed, {perf_counter() - start:.1f}s"
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
) -> list[list[EpisodeRating]]:
    """Judge the episodes of several files in ONE batch (decoding is ~6x cheaper per token at batch 16
    than alone), each rating appended to its own file's store; returns every group's ratings."""
    label = judge.spec.label
    todo, owner = [], {}
    for gi, (episodes, store) in enumerate(groups):
        have = store.keys()
        for rec in episodes:
            version = rating_version(rec, reasoning_max_chars)
            if any(RatingKey(rec.episode_id, label, version, s) not in have for s in range(samples)):
                todo.append(rec)
                owner[rec.episode_id] = gi
    if todo:
        new = judge_episodes(todo, judge, agents=agents, samples=samples, temperature=temperature,
                             progress=progress, reasoning_max_chars=reasoning_max_chars, reformatter=reformatter)
        for gi, (_, store) in enumerate(groups):
            store.append(r for r in new if owner.get(r.episode_id) == gi)
    out = []
    for eps, store in groups:
        wanted = {e.episode_id: rating_version(e, reasoning_max_chars) for e in eps}
        out.append([r for r in store.read() if r.judge == label and wanted.get(r.episode_id) == r.rubric_version])
    return out
