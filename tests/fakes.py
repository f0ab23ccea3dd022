"""Scripted models for the run-integrity tests: what is keyed, resumed, counted and refused does not
depend on what a model says, so these answer instantly (valid actions, valid judgements) and fail on
cue. Tests that need real generation use the embedded model instead."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sotopia_pi_lib.judge.rubric import DIMENSIONS
from sotopia_pi_lib.llm.base import LLM
from sotopia_pi_lib.llm.types import LLMRequest, LLMResponse, ModelSpec

Fault = Callable[[LLMRequest], str | None]  # an error message for the requests that should fail


class ScriptedPlayer(LLM):
    """Each agent speaks once, then leaves (by session); `tag` is part of its identity (think: its
    adapter's hash)."""

    def __init__(self, tag: str = "v1", fault: Fault | None = None) -> None:
        self.spec = ModelSpec(backend="hf", model=f"scripted-{tag}")
        self.tag, self.fault, self.requests = tag, fault, 0
        self.sessions: set[str | None] = set()

    def identity(self) -> dict[str, Any]:
        return {"backend": "scripted", "adapter_sha256": self.tag}

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        out = []
        for r in requests:
            self.requests += 1
            error = self.fault(r) if self.fault else None
            if error:
                out.append(LLMResponse(finish_reason="error", error=error))
                continue
            again = r.session is not None and r.session in self.sessions
            self.sessions.add(r.session)
            action = {"action_type": "leave" if again else "speak", "argument": f"hello from {self.tag}"}
            out.append(LLMResponse(text=json.dumps(action), parsed=action, completion_tokens=5))
        return out


class ScriptedJudge(LLM):
    """Rates every dimension at its midpoint (sample-dependent), or fails on cue."""

    def __init__(self, tag: str = "judge-v1", fault: Fault | None = None) -> None:
        self.spec = ModelSpec(backend="hf", model="scripted-judge")
        self.tag, self.fault, self.requests = tag, fault, 0

    def identity(self) -> dict[str, Any]:
        return {"backend": "scripted", "weights_sha256": self.tag}

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        out = []
        for r in requests:
            self.requests += 1
            error = self.fault(r) if self.fault else None
            if error:
                out.append(LLMResponse(finish_reason="error", error=error))
                continue
            obj = {k: {d.name: {"reasoning": "ok", "score": (d.low + d.high) // 2 + r.sample_index % 2}
                       for d in DIMENSIONS} for k in ("agent_1", "agent_2")}
            out.append(LLMResponse(text=json.dumps(obj), parsed=obj, completion_tokens=10))
        return out
