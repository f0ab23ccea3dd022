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


class _Scripted(LLM):
    """Answers each request with `answer(request)` as parsed JSON, or fails it when `fault` says so;
    `tag` is part of the model's identity under `identity_key` (think: its adapter's hash)."""

    identity_key = ""
    completion_tokens = 0

    def __init__(self, model: str, tag: str, fault: Fault | None) -> None:
        self.spec = ModelSpec(backend="hf", model=model)
        self.tag, self.fault, self.requests = tag, fault, 0

    def identity(self) -> dict[str, Any]:
        return {"backend": "scripted", self.identity_key: self.tag}

    def answer(self, request: LLMRequest) -> dict[str, Any]:
        raise NotImplementedError

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        out = []
        for r in requests:
            self.requests += 1
            error = self.fault(r) if self.fault else None
            if error:
                out.append(LLMResponse(finish_reason="error", error=error))
                continue
            obj = self.answer(r)
            out.append(LLMResponse(text=json.dumps(obj), parsed=obj, completion_tokens=self.completion_tokens))
        return out


class ScriptedPlayer(_Scripted):
    """Each agent speaks once, then leaves (by session)."""

    identity_key = "adapter_sha256"
    completion_tokens = 5

    def __init__(self, tag: str = "v1", fault: Fault | None = None) -> None:
        super().__init__(f"scripted-{tag}", tag, fault)
        self.sessions: set[str | None] = set()

    def answer(self, request: LLMRequest) -> dict[str, Any]:
        again = request.session is not None and request.session in self.sessions
        self.sessions.add(request.session)
        return {"action_type": "leave" if again else "speak", "argument": f"hello from {self.tag}"}


class ScriptedJudge(_Scripted):
    """Rates every dimension at its midpoint (sample-dependent), or fails on cue."""

    identity_key = "weights_sha256"
    completion_tokens = 10

    def __init__(self, tag: str = "judge-v1", fault: Fault | None = None) -> None:
        super().__init__("scripted-judge", tag, fault)

    def answer(self, request: LLMRequest) -> dict[str, Any]:
        mid = {d.name: (d.low + d.high) // 2 + request.sample_index % 2 for d in DIMENSIONS}
        return {k: {name: {"reasoning": "ok", "score": score} for name, score in mid.items()}
                for k in ("agent_1", "agent_2")}  # fmt: skip
