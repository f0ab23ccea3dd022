"""JSON-schema checks shared by every backend: the check before generation, validation after.

A request's schema is checked before any generation, so a typo in a rubric or action schema fails in
a second instead of after an hour of sampling. Besides being a valid Draft 2020-12 schema, it must stay
within what constrained decoding (xgrammar in `hf`, guided decoding in `vllm`, OpenAI structured
outputs) can enforce token by token. The keywords rejected below were found by compiling schemas with
xgrammar 0.2.8 and feeding it violating JSON: it accepts the violation (`not`, `if`/`then`/`else`,
`uniqueItems`, `dependentRequired`, several `allOf` branches, remote `$ref`) or rejects valid JSON
(`patternProperties`, `contains`, `dependentSchemas`), so a model's output would fail validation anyway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from ..errors import ConfigError

UNSUPPORTED_KEYWORDS: frozenset[str] = frozenset(
    {
        "not", "if", "then", "else", "uniqueItems", "contains", "minContains", "maxContains",
        "dependentRequired", "dependentSchemas", "patternProperties",
        "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor",
    }
)  # fmt: skip
BOUND_PAIRS = (("minimum", "maximum"), ("minLength", "maxLength"), ("minItems", "maxItems"),
               ("minProperties", "maxProperties"))  # fmt: skip
_UNSUPPORTED_REGEX = re.compile(r"\(\?<[=!]|\\[1-9]|\(\?P=")
# Keywords whose value is a map of name -> subschema (the names themselves are not keywords).
_SCHEMA_MAPS = {"properties", "$defs", "definitions"}
_SCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}


def canonical_schema(schema: Any) -> str:
    """The schema as canonical JSON (used as a memo key and part of the cache key)."""
    try:
        return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"json_schema is not JSON-serialisable: {e}") from e


def check_schema(schema: Any) -> None:
    """Raise ConfigError naming the location at fault unless `schema` is usable for constrained output."""
    if not isinstance(schema, dict):
        raise ConfigError(f"json_schema must be a JSON object, got {type(schema).__name__}: {schema!r:.80}")
    _check_canonical(canonical_schema(schema))


@lru_cache(maxsize=256)
def _check_canonical(text: str) -> None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    schema = json.loads(text)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "<root>"
        raise ConfigError(f"invalid json_schema at {where}: {e.message}") from None
    for where, node in _subschemas(schema, ""):
        _check_node(schema, where or "<root>", node)


def _subschemas(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (location, subschema) in the schema, root first."""
    if not isinstance(node, dict):
        return
    yield where, node
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                yield from _subschemas(sub, f"{where}/{key}/{name}")
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            for i, sub in enumerate(value):
                yield from _subschemas(sub, f"{where}/{key}/{i}")
        elif key in {"items", "additionalProperties", "propertyNames"} or key in UNSUPPORTED_KEYWORDS:
            yield from _subschemas(value, f"{where}/{key}")


def _check_node(root: dict[str, Any], where: str, node: dict[str, Any]) -> None:
    bad = sorted(UNSUPPORTED_KEYWORDS & node.keys())
    if bad:
        raise ConfigError(
            f"json_schema at {where}: keyword {bad[0]!r} cannot be enforced by constrained decoding"
        )
    if len(node.get("allOf", [])) > 1:
        raise ConfigError(
            f"json_schema at {where}: 'allOf' with several schemas cannot be enforced; merge them"
        )
    for low, high in BOUND_PAIRS:
        if low in node and high in node and node[low] > node[high]:
            raise ConfigError(
                f"json_schema at {where}: {low}={node[low]} > {high}={node[high]}; nothing matches"
            )
    if "pattern" in node and _UNSUPPORTED_REGEX.search(node["pattern"]):
        raise ConfigError(
            f"json_schema at {where}: pattern {node['pattern']!r} uses a look-behind or back-reference, "
            "which constrained decoding does not support"
        )
    if "$ref" in node:
        _resolve_ref(root, where, node["$ref"])


def _resolve_ref(root: dict[str, Any], where: str, ref: str) -> None:
    if ref != "#" and not ref.startswith("#/"):
        raise ConfigError(f"json_schema at {where}: $ref {ref!r} is not local ('#/...'); inline the schema")
    target: Any = root
    for part in ref[2:].split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            raise ConfigError(f"json_schema at {where}: $ref {ref!r} points to nothing")
        target = target[part]


@lru_cache(maxsize=256)
def _validator(text: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(text))


def validation_error(value: Any, schema: dict[str, Any]) -> str | None:
    """Why `value` does not match `schema` (the most relevant error, with its location), or None."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator(canonical_schema(schema)).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "<root>"
    return f"output at {where}: {error.message}"


def parse_json_output(
    text: str, schema: dict[str, Any], *, surrounding_text: bool = False
) -> tuple[Any, str | None]:
    """Parse a model's JSON answer and validate it: (parsed or None, error message or None).

    With `surrounding_text=False` the whole reply must be the JSON value: the form for output decoded
    under a grammar (the hf backend), where anything else means the decoder went wrong. With True the
    first JSON value in the reply is taken and prose or code fences around it are ignored: the form
    for replies of remote servers and prompted (unconstrained) models, which often wrap their answer.

    Raw control characters inside strings are accepted (strict=False): xgrammar's JSON string rule
    lets a byte token such as <0x01> through, which Python's strict parser rejects; a randomly
    initialised model on a GPU found that (tests/test_cuda.py). Everything else is strict."""
    try:
        value = extract_json(text) if surrounding_text else json.loads(text, strict=False)
    except json.JSONDecodeError as e:
        return None, f"output is not JSON ({e.msg} at char {e.pos})"
    error = validation_error(value, schema)
    return (None, error) if error else (value, None)


def extract_json(text: str) -> Any:
    """The first JSON value in a reply, tolerating prose or code fences around it."""
    try:
        return json.loads(text, strict=False)
    except json.JSONDecodeError:
        starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
        if not starts:
            raise
        return json.JSONDecoder(strict=False).raw_decode(text[min(starts) :])[0]
