"""SOTOPIA-EVAL by the official package's own evaluator: the ratings of sotopia-style episodes.

A rating job replays the stored episode through the package's environment (so the evaluator sees
the inbox the live episode had) and calls its `ReachGoalLLMEvaluator` as its terminal evaluator is
called, with the judge answering through the project's server (official/session.py). Its prompt is the
package's (`EvaluationBySocialDimensions`), its output the package's parsed scores, here checked
against the project's ranges and stored as ordinary EpisodeRatings under the package's version.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..data.profiles import AgentProfile
from ..errors import ConfigError, DataError
from ..llm.base import LLM
from ..official.routing import Exchange
from ..official.session import OfficialSession, SessionConfig
from ..sim.episode import EpisodeRecord
from ..sim.official import REFORMAT_LABEL, setup_payload
from ..sim.rules import setup_from_record
from ..sim.style import CONSTRAINED, is_constrained_style, is_official_style
from .ratings import EpisodeRating, parse_judgement
from .rubric import BY_NAME
from .schema import AGENT_KEYS, judge_max_tokens

log = logging.getLogger(__name__)

# The package's evaluator sends no max_tokens (as long as the model likes; GPT-4 writes fourteen
# reasonings); this bound only stops a local model that never closes its JSON.
FREE_JUDGE_MAX_TOKENS = 2048


def official_rubric_version(record: EpisodeRecord, reasoning_max_chars: int) -> str | None:
    """The rubric version of ratings by the package's evaluator of `record`, None for other styles:
    the package and its version, plus the reasoning cap when decoding is constrained."""
    if not is_official_style(record.prompt_version):
        return None
    package = record.prompt_version.removesuffix(CONSTRAINED)
    constrained = is_constrained_style(record.prompt_version)
    return package + (f"{CONSTRAINED}/reasoning{reasoning_max_chars}" if constrained else "")


def evaluation_schema_from(package_schema: Mapping[str, Any], reasoning_max_chars: int) -> dict[str, Any]:
    """The package's EnvResponse schema tightened for constrained decoding: every dimension a
    [reasoning, score] pair (pydantic's tuple), the reasoning capped, the score in its range."""
    name = package_schema["properties"][package_schema["required"][0]]["$ref"].rsplit("/", 1)[-1]
    dimensions = package_schema["definitions"][name]["required"]
    unknown = [d for d in dimensions if d not in BY_NAME]
    if unknown:
        raise ConfigError(f"the package's evaluator rates dimensions {unknown} that the rubric does not know")

    def pair(dim: str) -> dict[str, Any]:
        score = {"type": "integer", "minimum": BY_NAME[dim].low, "maximum": BY_NAME[dim].high}
        return {"type": "array", "prefixItems": [{"type": "string", "maxLength": reasoning_max_chars}, score],
                "minItems": 2, "maxItems": 2, "items": False}  # fmt: skip

    agent = {"type": "object", "properties": {d: pair(d) for d in dimensions}, "required": list(dimensions),
             "additionalProperties": False}  # fmt: skip
    keys = list(package_schema["required"])
    return {"type": "object", "properties": {k: agent for k in keys}, "required": keys, "additionalProperties": False}


def _job(rec: EpisodeRecord, sample: int, judge: str, reformat: str, session: OfficialSession,
         agents: Mapping[str, AgentProfile] | None, max_tokens: int, constrained: bool) -> dict[str, Any]:
    job_id = f"{rec.episode_id}/judge/{sample}"
    agent_wire, reformat_wire = session.wire_models()
    route = {"episode": job_id, "slot": "judge", "seed": rec.seed, "sample": sample,
             "models": {agent_wire: judge, reformat_wire: reformat}, "max_tokens": max_tokens,
             "schema_name": "evaluation" if constrained else None}  # fmt: skip
    turns = [{"agent": t.agent, **t.action.model_dump()} for t in rec.turns]
    setup = setup_from_record(rec, dict(agents) if agents else None)
    return {"id": job_id, "kind": "rate", **setup_payload(setup), "turns": turns, "routes": {"judge": route}}


def _rating(rec: EpisodeRecord, sample: int, result: dict[str, Any], exchanges: list[Exchange], judge: str,
            temperature: float, version: str) -> EpisodeRating:
    where = f"the package's evaluator ({judge}) on episode {rec.episode_id} (sample {sample})"
    if "error" in result:
        raise DataError(f"{where}: the official worker failed: {result['error'].strip().splitlines()[-1]}")
    if not result["ratings"]:  # the package swallows its exceptions and returns no rating
        said = exchanges[-1].text[:200] if exchanges else "(the server answered no request)"
        raise DataError(f"{where}: no rating (the output did not parse, even after reformatting): {said!r}")
    obj = {key: {dim: {"reasoning": r, "score": s} for dim, (r, s) in result["ratings"][key].items()}
           for key in AGENT_KEYS if key in result["ratings"]}  # fmt: skip
    agents = parse_judgement(obj, where)
    return EpisodeRating(
        episode_id=rec.episode_id, judge=judge, rubric_version=version, sample_index=sample,
        temperature=temperature, agents=agents, prompt_tokens=sum(x.prompt_tokens for x in exchanges),
        completion_tokens=sum(x.completion_tokens for x in exchanges),
        latency_s=round(sum(x.latency_s for x in exchanges), 4), cached=all(x.cached for x in exchanges),
    )  # fmt: skip


def rate_official(
    todo: Sequence[tuple[EpisodeRecord, int]],
    judge: LLM,
    *,
    agents: Mapping[str, AgentProfile] | None,
    temperature: float,
    reasoning_max_chars: int,
    reformatter: LLM | None = None,
    max_live: int = 32,
) -> tuple[list[EpisodeRating], list[tuple[EpisodeRecord, int, str]]]:
    """Rate sotopia-style episodes (each with its sample index) with the package's evaluator;
    `reformatter` (default: the judge) rewrites output that does not parse, as gpt-3.5-turbo did.
    Returns the ratings and, for each failed judgement, (episode, sample, error)."""
    label = judge.spec.label
    served = {label: judge} | ({REFORMAT_LABEL: reformatter} if reformatter is not None else {})
    config = SessionConfig(max_live=min(max_live, max(1, len(todo))), judge_temperature=temperature)
    by_id = {f"{rec.episode_id}/judge/{s}": (rec, s) for rec, s in todo}
    ratings, failures = [], []
    with OfficialSession(served, config) as session:
        package = session.hello["schemas"]["evaluation"]
        session.router.schemas["evaluation"] = evaluation_schema_from(package, reasoning_max_chars)
        for rec, s in todo:
            constrained = is_constrained_style(rec.prompt_version)
            max_tokens = judge_max_tokens(reasoning_max_chars) if constrained else FREE_JUDGE_MAX_TOKENS
            reformat = REFORMAT_LABEL if reformatter is not None else label
            session.submit(_job(rec, s, label, reformat, session, agents, max_tokens, constrained))
        for result, exchanges in session.results():
            rec, s = by_id[result["id"]]
            version = official_rubric_version(rec, reasoning_max_chars)
            assert version is not None
            try:
                ratings.append(_rating(rec, s, result, exchanges, label, temperature, version))
            except DataError as e:
                log.warning("%s", e)
                failures.append((rec, s, str(e)))
    return ratings, failures
