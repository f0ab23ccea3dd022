"""Episode ratings: the record type, its append-only store, and the join with episodes.

Ratings live in their own JSONL keyed by episode_id rather than inside episode records, so an
episode is written once and never edited, several judges and samples can rate the same episode, and
re-judging with a new rubric adds records instead of rewriting old ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import DataError
from ..redact import scrub_text
from ..sim.episode import EpisodeRecord
from ..store.records import RecordFile
from .rubric import BY_NAME, DIMENSION_NAMES, check_scores, overall_score
from .schema import AGENT_KEYS

log = logging.getLogger(__name__)


class DimensionRating(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reasoning: str
    score: int


class AgentRating(BaseModel):
    """One agent's seven scores with reasoning; `overall` must equal their mean (checked on load)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dimensions: dict[str, DimensionRating]
    overall: float

    @field_validator("dimensions")
    @classmethod
    def _seven_in_range(cls, v: dict[str, DimensionRating]) -> dict[str, DimensionRating]:
        try:
            check_scores({k: d.score for k, d in v.items()}, where="agent rating")
        except DataError as e:  # a ValueError so pydantic reports it with the field's location
            raise ValueError(str(e)) from None
        return {name: v[name] for name in DIMENSION_NAMES}  # canonical order

    @model_validator(mode="after")
    def _overall_is_mean(self) -> AgentRating:
        expected = overall_score(self.scores)
        if abs(self.overall - expected) > 1e-9:
            raise ValueError(f"overall {self.overall} is not the mean of the seven scores ({expected})")
        return self

    @property
    def scores(self) -> dict[str, int]:
        return {k: d.score for k, d in self.dimensions.items()}

    @classmethod
    def from_dimensions(cls, dimensions: Mapping[str, DimensionRating]) -> AgentRating:
        scores = {k: d.score for k, d in dimensions.items()}
        return cls(dimensions=dict(dimensions), overall=overall_score(scores))


class RatingKey(NamedTuple):
    """What a rating is of. `unit` hashes everything else that shapes it (the judge model's identity
    and the exact request: rubric text, the episode's transcript, schema, temperature, seed), so a
    changed judge, setting or episode is judged again instead of reusing an old rating."""

    episode_id: str
    judge: str
    rubric_version: str
    sample_index: int
    unit: str = ""


class EpisodeRating(BaseModel):
    """One judge sample's SOTOPIA-EVAL of both agents of one episode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    episode_id: str
    judge: str = Field(description="judge model label (ModelSpec.label)")
    rubric_version: str
    sample_index: int = Field(ge=0)
    temperature: float = Field(ge=0.0)
    agents: tuple[AgentRating, AgentRating] = Field(description="agent position 0 (moves first), then 1")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    unit: str = Field("", description="hash of the judge's identity and request (see RatingKey)")

    @property
    def key(self) -> RatingKey:
        return RatingKey(self.episode_id, self.judge, self.rubric_version, self.sample_index, self.unit)


class RatingFailure(BaseModel):
    """A judgement that failed (backend error, output that does not parse); a re-run asks it again."""

    episode_id: str
    judge: str
    rubric_version: str
    sample_index: int
    unit: str = ""
    error: str

    _no_secrets = field_validator("error")(scrub_text)  # a backend error may echo a URL or key

    @property
    def key(self) -> RatingKey:
        return RatingKey(self.episode_id, self.judge, self.rubric_version, self.sample_index, self.unit)


def parse_judgement(obj: Any, where: str) -> tuple[AgentRating, AgentRating]:
    """Turn the judge's JSON object into two AgentRatings; DataError naming `where` if it is not one.

    Constrained decoding makes this a formality for hf/vllm, but an OpenAI-compatible server may
    ignore the schema, so ranges are checked again here.
    """
    if not isinstance(obj, dict) or set(obj) != set(AGENT_KEYS):
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"{where}: judge output must have keys {list(AGENT_KEYS)}, got {keys}")
    out = []
    for key in AGENT_KEYS:
        agent = obj[key]
        if not isinstance(agent, dict):
            raise DataError(f"{where}: {key} is not an object")
        dims = {}
        for name, value in agent.items():
            if name not in BY_NAME or not isinstance(value, dict) or set(value) != {"reasoning", "score"}:
                raise DataError(f"{where}: {key}.{name} is not a known dimension with reasoning and score")
            if not isinstance(value["reasoning"], str) or type(value["score"]) is not int:
                raise DataError(f"{where}: {key}.{name} needs a string reasoning and an integer score")
            dims[name] = DimensionRating(reasoning=value["reasoning"], score=value["score"])
        check_scores({k: d.score for k, d in dims.items()}, where=f"{where}: {key}")
        out.append(AgentRating.from_dimensions(dims))
    return out[0], out[1]


class RatingStore(RecordFile[EpisodeRating, RatingFailure]):
    """Append-only ratings JSONL keyed by RatingKey, failures beside it. A re-run skips keys already
    present (`extend`); duplicates on read are dropped."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, EpisodeRating, RatingFailure, key=lambda r: r.key, what="rating")


@dataclass
class RatedEpisodes:
    """Episodes joined with their ratings, plus what did not match."""

    pairs: list[tuple[EpisodeRecord, list[EpisodeRating]]] = field(default_factory=list)
    unrated: list[str] = field(default_factory=list)
    orphans: list[EpisodeRating] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unrated and not self.orphans

    def summary(self) -> str:
        n = sum(len(r) for _, r in self.pairs)
        text = f"{len(self.pairs)} episodes, {n} ratings"
        if self.unrated:
            text += f"; {len(self.unrated)} episodes without ratings (e.g. {', '.join(self.unrated[:3])})"
        if self.orphans:
            ids = sorted({r.episode_id for r in self.orphans})
            text += f"; {len(self.orphans)} ratings of unknown episodes (e.g. {', '.join(ids[:3])})"
        return text


def join_ratings(
    episodes: Sequence[EpisodeRecord],
    ratings: Iterable[EpisodeRating],
    *,
    strict: bool = True,
    rubric_version: str | None = None,
) -> RatedEpisodes:
    """Attach ratings to episodes by episode_id.

    Unrated episodes and ratings of unknown episodes mean a stage was skipped or files from two runs
    were mixed; strict (default) raises DataError, otherwise the result lists them and a warning says so.
    `rubric_version` keeps only ratings of that version (others are ignored, not orphans).
    """
    by_id: dict[str, list[EpisodeRating]] = {e.episode_id: [] for e in episodes}
    result = RatedEpisodes()
    for r in ratings:
        if rubric_version is not None and r.rubric_version != rubric_version:
            continue
        if r.episode_id in by_id:
            by_id[r.episode_id].append(r)
        else:
            result.orphans.append(r)
    for e in episodes:
        found = by_id[e.episode_id]
        if found:
            result.pairs.append((e, found))
        else:
            result.unrated.append(e.episode_id)
    if not result.complete:
        if strict:
            raise DataError(f"ratings do not match episodes: {result.summary()}")
        log.warning("ratings do not match episodes: %s", result.summary())
    return result


def read_rated_episodes(
    episodes_path: str | Path,
    ratings_path: str | Path,
    *,
    strict: bool = True,
    rubric_version: str | None = None,
) -> RatedEpisodes:
    """Read a run's episode file and ratings file and join them (see join_ratings)."""
    from ..sim.episode_store import EpisodeStore

    episodes = EpisodeStore(episodes_path).records()
    if not Path(ratings_path).exists():
        raise DataError(f"{ratings_path}: no ratings file; run the judge on {episodes_path} first")
    return join_ratings(
        episodes, RatingStore(ratings_path).records(), strict=strict, rubric_version=rubric_version
    )
