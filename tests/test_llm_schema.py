"""check_schema: invalid or unenforceable schemas fail with the location at fault."""

from __future__ import annotations

import math

import pytest

from sotopia_pi_lib.errors import ConfigError
from sotopia_pi_lib.llm.schema import canonical_schema, check_schema, parse_json_output, validation_error
from sotopia_pi_lib.sim import ACTION_TYPES, action_schema

ACTION = action_schema(ACTION_TYPES, max_argument_chars=500)
RATING = {
    "$defs": {"score": {"type": "object", "properties": {"reasoning": {"type": "string"},
                                                        "score": {"type": "integer", "minimum": 0, "maximum": 10}},
                        "required": ["reasoning", "score"]}},
    "type": "object",
    "properties": {"agent_1": {"$ref": "#/$defs/score"}, "agent_2": {"$ref": "#/$defs/score"},
                   "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z_]+$"}, "maxItems": 3},
                   "kind": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
}  # fmt: skip


@pytest.mark.parametrize("schema", [ACTION, RATING, {}, {"type": "integer", "minimum": 0, "maximum": 0}])
def test_usable_schemas_pass(schema):
    check_schema(schema)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ([ACTION], "must be a JSON object, got list"),
        (True, "must be a JSON object, got bool"),
        ({"type": "strin"}, "invalid json_schema at type"),
        ({"type": "object", "properties": {"score": {"minimum": "zero"}}}, "at properties/score/minimum"),
        ({"type": "object", "required": "action_type"}, "at required"),
        ({"type": "number", "maximum": math.nan}, "not JSON-serialisable"),
    ],
)
def test_invalid_schema_names_the_location(schema, message):
    with pytest.raises(ConfigError, match=message):
        check_schema(schema)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "object", "properties": {"a": {"not": {"type": "string"}}}},
            "at /properties/a: keyword 'not'",
        ),
        ({"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}}, "keyword 'if'"),
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "keyword 'uniqueItems'"),
        ({"type": "object", "patternProperties": {"^a": {}}}, "keyword 'patternProperties'"),
        ({"type": "object", "dependentRequired": {"a": ["b"]}}, "keyword 'dependentRequired'"),
        ({"allOf": [{"type": "object"}, {"required": ["a"]}]}, "'allOf' with several"),
        ({"$ref": "https://example.com/schema.json"}, "is not local"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "points to nothing"),
        ({"type": "string", "pattern": "(?<=a)b"}, "look-behind"),
        ({"type": "string", "pattern": "(a)\\1"}, "back-reference"),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "minimum=5 > maximum=1"),
        (
            {"type": "array", "items": {"type": "string", "minLength": 3, "maxLength": 2}},
            "at /items: minLength",
        ),
    ],
)
def test_unenforceable_schema_is_rejected(schema, message):
    with pytest.raises(ConfigError, match=message):
        check_schema(schema)


def test_a_property_named_like_a_keyword_is_fine():
    check_schema({"type": "object", "properties": {"not": {"type": "string"}, "if": {"type": "integer"}}})


def test_canonical_schema_ignores_key_order():
    assert canonical_schema({"a": 1, "b": [2, {"d": 3, "c": 4}]}) == canonical_schema(
        {"b": [2, {"c": 4, "d": 3}], "a": 1}
    )


def test_validation_names_the_location():
    assert validation_error({"action_type": "speak", "argument": "hi"}, ACTION) is None
    assert validation_error({"action_type": "shout", "argument": "hi"}, ACTION).startswith(
        "output at action_type:"
    )
    assert parse_json_output('{"action_type": "none", "argument": ""}', ACTION) == (
        {"action_type": "none", "argument": ""},
        None,
    )
    parsed, error = parse_json_output('{"action_type": "none"', ACTION)
    assert parsed is None and error.startswith("output is not JSON")
    assert (
        parse_json_output('{"action_type": "none"}', ACTION)[1]
        == "output at <root>: 'argument' is a required property"
    )


def test_a_raw_control_character_in_a_string_still_parses():
    """xgrammar lets a byte token like <0x01> into a JSON string (seen from a random-weight model);
    the reply is kept, not failed."""
    text = '{"action_type": "speak", "argument": "hi\x01 there"}'
    assert parse_json_output(text, ACTION) == ({"action_type": "speak", "argument": "hi\x01 there"}, None)


def test_surrounding_text_is_read_past_only_when_asked():
    """Grammar-decoded output must be the JSON alone; a prompted model's reply may wrap it in prose."""
    text = 'Sure! Here is my move:\n```json\n{"action_type": "leave", "argument": ""}\n```'
    parsed, error = parse_json_output(text, ACTION)
    assert parsed is None and error.startswith("output is not JSON")
    assert parse_json_output(text, ACTION, surrounding_text=True) == ({"action_type": "leave", "argument": ""}, None)
    assert parse_json_output("no JSON here", ACTION, surrounding_text=True)[1].startswith("output is not JSON")
    assert parse_json_output('I say {"action_type": "shout", "argument": "x"}', ACTION, surrounding_text=True)[
        1
    ].startswith("output at action_type:")
