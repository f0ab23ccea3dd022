"""Engines shared by the models of one stage: one per (backend, base model, weight options).

A stage asks for several models of one base: the policy and its trained variants (SR, BC, BC+SR:
the base plus a LoRA adapter each) and, in the embedded profiles, every other role as well. Built
alone, each would load its own copy of the weights (vLLM would even claim most of the GPU for each).
Through a pool, models whose specs differ only in their adapter share one base object (the backend's
`Base`: hf_base.HFBase, vllm_backend.VLLMBase), which loads on the first request it cannot answer
from the cache, with every adapter registered by then, and drops its weights when the last model
using it is closed. Backends without a `Base` (openai) are built as they are.
"""

from __future__ import annotations

import json
from typing import Any

from .base import LLM
from .types import ModelSpec


def base_key(spec: ModelSpec) -> str:
    """What a shared base is keyed by: everything in the spec but the adapter."""
    return json.dumps(spec.model_dump(mode="json", exclude={"adapter"}), sort_keys=True)


class EnginePool:
    def __init__(self) -> None:
        self.bases: dict[str, Any] = {}

    def build(self, spec: ModelSpec, cls: type[LLM]) -> LLM:
        """The backend's model for `spec`, sharing its base with the pool's other models of that base."""
        base_class = getattr(cls, "Base", None)
        if base_class is None:
            return cls(spec)  # type: ignore[call-arg]
        key = base_key(spec)
        if key not in self.bases:
            self.bases[key] = base_class(spec)
        return cls(spec, base=self.bases[key])  # type: ignore[call-arg]

    def loaded(self) -> int:
        """How many bases hold weights now."""
        return sum(bool(getattr(b, "loaded", False)) for b in self.bases.values())

    def close(self) -> None:
        for base in self.bases.values():
            base.unload()
