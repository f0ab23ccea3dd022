"""The seven SOTOPIA-EVAL dimensions: names, score ranges and the project's own wording.

Names and ranges are SOTOPIA's (Zhou et al., ICLR 2024) so ratings compare with published numbers
and export to sotopia's EpisodeLog; the descriptions are written for this project and kept short,
because every judge prompt carries them and a 135M judge pays for each prompt token.

RUBRIC_VERSION must change whenever a description, a range, the judge prompt template or the output
schema/parser changes; `RUBRIC_FINGERPRINT` pins the content of the current version, and a test fails
when the content changes without a version bump.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, model_validator

from ..errors import DataError

RUBRIC_VERSION = "sotopia-eval-1"
# sha256 of everything that defines RUBRIC_VERSION (see judge.prompt.rubric_fingerprint).
RUBRIC_FINGERPRINT = "88c3c7a0b4330369955f88bb733b729c5f38e2b78f8d0bede835463100fb8254"

# Upper bound on each "reasoning" string (characters). Short enough that all fourteen reasonings
# fit the judge's token budget on a small model; long enough for one or two sentences.
REASONING_MAX_CHARS = 160


class Dimension(BaseModel):
    """One rated dimension: an integer score in [low, high]."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    low: int
    high: int
    description: str

    @model_validator(mode="after")
    def _range_ok(self) -> Dimension:
        if self.low >= self.high:
            raise ValueError(f"dimension {self.name}: low {self.low} must be below high {self.high}")
        return self

    def contains(self, score: int) -> bool:
        return self.low <= score <= self.high


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension(
        name="believability",
        low=0,
        high=10,
        description="Does the agent act naturally and in line with its character's background, "
        "personality and values (no identity confusion, no needless repetition)? "
        "0 = not believable, 10 = indistinguishable from a real person.",
    ),
    Dimension(
        name="relationship",
        low=-5,
        high=5,
        description="How did the interaction change the agent's relationship with the other person "
        "and its social standing? -5 = badly damaged, 0 = unchanged, 5 = clearly strengthened.",
    ),
    Dimension(
        name="knowledge",
        low=0,
        high=10,
        description="Did the agent learn information that is new and important to it? "
        "0 = nothing new, 10 = critical new information.",
    ),
    Dimension(
        name="secret",
        low=-10,
        high=0,
        description="Did the agent keep its secret and secret intentions? "
        "0 = nothing leaked, -10 = a critical secret revealed.",
    ),
    Dimension(
        name="social_rules",
        low=-10,
        high=0,
        description="Did the agent break social norms, moral rules or laws? "
        "0 = acceptable conduct, -10 = breaking the law.",
    ),
    Dimension(
        name="financial_and_material_benefits",
        low=-5,
        high=5,
        description="Did the agent gain or lose money, goods or other material benefits, now or later? "
        "-5 = significant loss, 0 = none, 5 = significant gain.",
    ),
    Dimension(
        name="goal",
        low=0,
        high=10,
        description="How far did the agent achieve its own social goal? 0 = not at all, 10 = fully achieved.",
    ),
)

DIMENSION_NAMES: tuple[str, ...] = tuple(d.name for d in DIMENSIONS)
BY_NAME: dict[str, Dimension] = {d.name: d for d in DIMENSIONS}


def check_scores(scores: Mapping[str, int], where: str = "rating") -> None:
    """Raise DataError unless `scores` has exactly the seven dimensions, each an int in range."""
    missing = [n for n in DIMENSION_NAMES if n not in scores]
    extra = [n for n in scores if n not in BY_NAME]
    if missing or extra:
        raise DataError(f"{where}: missing dimensions {missing}, unknown dimensions {extra}")
    for name, score in scores.items():
        dim = BY_NAME[name]
        if isinstance(score, bool) or not isinstance(score, int) or not dim.contains(score):
            raise DataError(f"{where}: {name} = {score!r} is not an integer in [{dim.low}, {dim.high}]")


def overall_score(scores: Mapping[str, int]) -> float:
    """SOTOPIA's overall score: the unweighted mean of the seven dimensions."""
    check_scores(scores)
    return sum(scores[n] for n in DIMENSION_NAMES) / len(DIMENSION_NAMES)
