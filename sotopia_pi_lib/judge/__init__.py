"""SOTOPIA-EVAL: an LLM judge rates both agents of an episode on seven dimensions.

Ratings are separate append-only records keyed by episode_id (see `ratings`), so episodes are never
rewritten and several judges or samples can rate the same episode.
"""

from .prompt import judge_request, render_judge_messages, rubric_fingerprint
from .rate import RatingSummary, judge_episodes, judge_temperature, summarize_samples
from .ratings import (
    AgentRating,
    DimensionRating,
    EpisodeRating,
    RatedEpisodes,
    RatingKey,
    RatingStore,
    join_ratings,
    parse_judgement,
    read_rated_episodes,
)
from .rubric import DIMENSION_NAMES, DIMENSIONS, RUBRIC_VERSION, Dimension, overall_score
from .schema import agent_schema, judge_max_tokens, judge_schema

__all__ = [
    "DIMENSIONS",
    "DIMENSION_NAMES",
    "RUBRIC_VERSION",
    "AgentRating",
    "Dimension",
    "DimensionRating",
    "EpisodeRating",
    "RatedEpisodes",
    "RatingKey",
    "RatingStore",
    "RatingSummary",
    "agent_schema",
    "judge_episodes",
    "judge_max_tokens",
    "judge_request",
    "judge_schema",
    "judge_temperature",
    "join_ratings",
    "overall_score",
    "parse_judgement",
    "read_rated_episodes",
    "render_judge_messages",
    "rubric_fingerprint",
    "summarize_samples",
]
