"""The rubric's ranges and the judge schema: an out-of-range score must be impossible to generate."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from sotopia_pi_lib.data.human_eval import HUMAN_DIMENSIONS
from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.judge import (
    DIMENSION_NAMES,
    DIMENSIONS,
    RUBRIC_VERSION,
    judge_max_tokens,
    judge_schema,
    overall_score,
    rubric_fingerprint,
)
from sotopia_pi_lib.judge.rubric import BY_NAME, REASONING_MAX_CHARS, RUBRIC_FINGERPRINT, check_scores
from sotopia_pi_lib.llm.schema import check_schema

# SOTOPIA-EVAL's ranges (Zhou et al. 2024; sotopia.database.evaluation_dimensions.SotopiaDimensions), as
# the released human-evaluation form scores them; the data layer keeps them without importing the judge.
PAPER_RANGES = HUMAN_DIMENSIONS


def _valid_output(score_of=lambda d: d.high) -> dict:
    agent = {d.name: {"reasoning": "Short reason.", "score": score_of(d)} for d in DIMENSIONS}
    return {"agent_1": agent, "agent_2": copy.deepcopy(agent)}


def test_dimensions_are_sotopias_seven_with_paper_ranges():
    assert {d.name: (d.low, d.high) for d in DIMENSIONS} == PAPER_RANGES
    assert tuple(PAPER_RANGES) == DIMENSION_NAMES


def test_rubric_content_is_pinned_to_its_version():
    assert rubric_fingerprint() == RUBRIC_FINGERPRINT, (
        f"the rubric, judge prompt, schema or parser changed: bump RUBRIC_VERSION ({RUBRIC_VERSION}) "
        f"and set RUBRIC_FINGERPRINT = {rubric_fingerprint()!r}"
    )


def test_overall_is_unweighted_mean_and_bad_scores_are_rejected():
    scores = {"believability": 8, "relationship": 2, "knowledge": 3, "secret": -1, "social_rules": 0,
              "financial_and_material_benefits": -2, "goal": 7}  # fmt: skip
    assert overall_score(scores) == pytest.approx(17 / 7)
    with pytest.raises(DataError, match="goal = 11"):
        check_scores({**scores, "goal": 11})
    with pytest.raises(DataError, match="missing dimensions \\['secret'\\]"):
        check_scores({k: v for k, v in scores.items() if k != "secret"})
    with pytest.raises(DataError, match="not an integer"):
        check_scores({**scores, "knowledge": 3.5})


def test_schema_is_usable_for_constrained_decoding_and_puts_reasoning_first():
    schema = judge_schema()
    check_schema(schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    agent = schema["properties"]["agent_1"]
    assert list(agent["properties"]) == list(DIMENSION_NAMES)
    for name, dim in agent["properties"].items():
        assert list(dim["properties"]) == ["reasoning", "score"]
        assert (dim["properties"]["score"]["minimum"], dim["properties"]["score"]["maximum"]) == PAPER_RANGES[
            name
        ]
        assert dim["properties"]["reasoning"]["maxLength"] == REASONING_MAX_CHARS


@pytest.mark.parametrize("name", DIMENSION_NAMES)
def test_schema_rejects_out_of_range_scores(name):
    validator = jsonschema.Draft202012Validator(judge_schema())
    dim = BY_NAME[name]
    for score in (dim.low, dim.high):
        out = _valid_output()
        out["agent_2"][name]["score"] = score
        validator.validate(out)
    for score in (dim.low - 1, dim.high + 1):
        out = _valid_output()
        out["agent_2"][name]["score"] = score
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(out)


def test_schema_rejects_missing_fields_floats_and_long_reasoning():
    validator = jsonschema.Draft202012Validator(judge_schema())
    out = _valid_output()
    del out["agent_1"]["goal"]["reasoning"]
    assert not validator.is_valid(out)
    out = _valid_output()
    out["agent_1"]["goal"]["score"] = 5.5
    assert not validator.is_valid(out)
    out = _valid_output()
    out["agent_1"]["goal"]["reasoning"] = "x" * (REASONING_MAX_CHARS + 1)
    assert not validator.is_valid(out)
    out = _valid_output()
    del out["agent_2"]
    assert not validator.is_valid(out)


def test_xgrammar_cannot_produce_an_out_of_range_score():
    """The grammar the hf backend decodes with accepts the valid output and refuses every bad score."""
    xgr = pytest.importorskip("xgrammar")
    accept = getattr(xgr.testing, "_is_grammar_accept_string", None)
    if accept is None:
        pytest.skip("this xgrammar has no testing._is_grammar_accept_string")
    grammar = xgr.Grammar.from_json_schema(json.dumps(judge_schema()))
    assert accept(grammar, json.dumps(_valid_output(lambda d: d.low)))
    assert accept(grammar, json.dumps(_valid_output(lambda d: d.high), separators=(",", ":")))
    for dim in DIMENSIONS:
        for score in (dim.low - 1, dim.high + 1):
            out = _valid_output()
            out["agent_1"][dim.name]["score"] = score
            assert not accept(grammar, json.dumps(out)), (dim.name, score)


def test_token_budget_covers_the_longest_reasoning():
    # 14 reasonings at the maximum length, one token per two characters, plus the JSON around them.
    longest = _valid_output()
    for agent in longest.values():
        for d in agent.values():
            d["reasoning"] = "ab" * (REASONING_MAX_CHARS // 2)
    assert judge_max_tokens() >= len(json.dumps(longest)) // 3
