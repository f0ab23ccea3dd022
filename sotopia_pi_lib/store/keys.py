"""Content keys: each unit of work is named by a hash of everything that shapes its result.

A re-run recognises finished work by its key, so the key must change whenever anything that would
change the result changes (settings, model identity, prompt text, seeds, input content), or results
made under other settings would be silently reused. Config objects are hashed whole, so a field added
later is in the key without anyone remembering to add it; a config class lists in `EXECUTION_ONLY`
the fields that only change how work is scheduled (batch size, progress bars), never what it produces.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel


def to_jsonable(obj: Any) -> Any:
    """Pydantic models as their JSON dump; everything else as it is (it must be JSON-serialisable)."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def content_hash(obj: Any, length: int | None = None) -> str:
    """sha256 of the canonical JSON of `obj` (optionally its first `length` hex digits)."""
    digest = hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()
    return digest[:length] if length else digest


def result_fields(config: BaseModel) -> dict[str, Any]:
    """The fields of a config that shape results: all of them, recursively, except those its class
    (or a nested config's class) lists in a class-level `EXECUTION_ONLY` set."""
    skip = getattr(type(config), "EXECUTION_ONLY", frozenset())
    dumped = config.model_dump(mode="json")
    out: dict[str, Any] = {}
    for name in type(config).model_fields:
        if name in skip:
            continue
        value = getattr(config, name)
        out[name] = result_fields(value) if isinstance(value, BaseModel) else dumped[name]
    return out
