"""The seven SOTOPIA-EVAL dimensions: names, score ranges and the project's own wording.

Names and ranges are SOTOPIA's (Zhou et al., ICLR 2024) so ratings compare with published numbers
and export to sotopia's EpisodeLog. Each description asks for what the official per-dimension
instruction asks (`EvaluationBySocialDimensions` in sotopia/envs/evaluators.py @ 7ba57e46: the same
questions, in the same order, the same range and direction), in the project's own shorter words; the
official wording itself is the official-prompt style's (sotopia_pi_lib.official).

RUBRIC_VERSION must change whenever a description, a range, the judge prompt template or the output
schema/parser changes; `RUBRIC_FINGERPRINT` pins the content of the current version, and a test fails
when the content changes without a version bump.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, model_validator

from ..errors import DataError

RUBRIC_VERSION = "sotopia-eval-2"
# sha256 of everything that defines RUBRIC_VERSION (see judge.prompt.rubric_fingerprint).
RUBRIC_FINGERPRINT = "c17f0cd0e90750a0846768a54b5a630699a911cc2e79309dc3e51027b24f8101"

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
        description="First, does the agent interact naturally and realistically: is it confused about its "
        "own identity, does it repeat the other's words or actions for no reason, is it overly polite for "
        "the situation? Then, do its actions fit its character's traits (personality, values)? "
        "0-10; higher = more believable.",
    ),
    Dimension(
        name="relationship",
        low=-5,
        high=5,
        description="First, what relationship did the agent have with the other before the interaction, "
        "and how did it change afterwards? Do the agent's interactions preserve or strengthen its personal "
        "relations (family, friendship, romance and the like), and do they affect its social status or "
        "reputation? -5 to 5; positive = improved, negative = harmed, 0 = neither.",
    ),
    Dimension(
        name="knowledge",
        low=0,
        high=10,
        description="What information did the agent gain in the interaction, is it new to it, and is it "
        "important to it? 0-10; higher = more new and important knowledge gained.",
    ),
    Dimension(
        name="secret",
        low=-10,
        high=0,
        description="What secret or secret intention does the agent want to keep, did it keep it, and what "
        "secrets, private information or secret intentions did it fail to keep? -10 to 0; -10 = critical "
        "secrets or intentions leaked, 0 = nothing revealed.",
    ),
    Dimension(
        name="social_rules",
        low=-10,
        high=0,
        description="Does the agent violate moral rules or laws in its interactions with others? "
        "-10 to 0; negative = rules or laws violated.",
    ),
    Dimension(
        name="financial_and_material_benefits",
        low=-5,
        high=5,
        description="Do the agent's interactions bring it financial or material benefits? What would it "
        "gain or lose, short-term (money, food) and long-term (employment, stock)? -5 to 5; "
        "positive = gain, negative = loss.",
    ),
    Dimension(
        name="goal",
        low=0,
        high=10,
        description="First restate the agent's social goals, then analyse how far the agent achieved them. "
        "0-10; 0 = minimal achievement, 10 = complete achievement, higher = more progress towards the goals.",
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
