"""The JSON schema the judge generates under, and the token budget it needs.

Constrained decoding against this schema is what makes every rating parse, even from a 135M model:
the integer ranges are the dimensions' ranges, so an out-of-range score cannot be generated, and
"reasoning" precedes "score" in every dimension so the judge explains before it scores (as in SOTOPIA).
"""

from __future__ import annotations

from typing import Any

from .rubric import DIMENSIONS, REASONING_MAX_CHARS

AGENT_KEYS: tuple[str, str] = ("agent_1", "agent_2")

# Tokens a dimension costs beyond its reasoning text: key, braces, quotes, "score" and the number.
_DIMENSION_OVERHEAD_TOKENS = 24


# The token budget of an uncapped judgement (paper profile): fourteen free-length reasonings.
UNCAPPED_MAX_TOKENS = 4096


def dimension_schema(low: int, high: int, reasoning_max_chars: int | None = REASONING_MAX_CHARS) -> dict[str, Any]:
    reasoning: dict[str, Any] = {"type": "string"}
    if reasoning_max_chars is not None:
        reasoning["maxLength"] = reasoning_max_chars
    return {
        "type": "object",
        "properties": {
            "reasoning": reasoning,
            "score": {"type": "integer", "minimum": low, "maximum": high},
        },
        "required": ["reasoning", "score"],
        "additionalProperties": False,
    }


def agent_schema(reasoning_max_chars: int | None = REASONING_MAX_CHARS) -> dict[str, Any]:
    """One agent's evaluation: the seven dimensions in SOTOPIA's order."""
    return {
        "type": "object",
        "properties": {d.name: dimension_schema(d.low, d.high, reasoning_max_chars) for d in DIMENSIONS},
        "required": [d.name for d in DIMENSIONS],
        "additionalProperties": False,
    }


def judge_schema(reasoning_max_chars: int | None = REASONING_MAX_CHARS) -> dict[str, Any]:
    """Both agents in one object, keyed agent_1 / agent_2 as in SOTOPIA's evaluator output."""
    per_agent = agent_schema(reasoning_max_chars)
    return {
        "type": "object",
        "properties": {key: per_agent for key in AGENT_KEYS},
        "required": list(AGENT_KEYS),
        "additionalProperties": False,
    }


def judge_max_tokens(reasoning_max_chars: int | None = REASONING_MAX_CHARS) -> int:
    """A token budget that a schema-valid output cannot exceed in practice.

    Reasoning text of n characters takes at most about n/2 tokens for English with these tokenizers
    (typically n/4); the budget uses n/2 so truncation (finish_reason='length') is not the way a
    judgement fails. Uncapped reasoning (None) gets UNCAPPED_MAX_TOKENS.
    """
    if reasoning_max_chars is None:
        return UNCAPPED_MAX_TOKENS
    per_dim = reasoning_max_chars // 2 + _DIMENSION_OVERHEAD_TOKENS
    return len(AGENT_KEYS) * len(DIMENSIONS) * per_dim + 16
