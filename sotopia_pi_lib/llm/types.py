"""Request, response and model-spec types shared by every backend.

One request/response shape for all backends is what lets a params file swap the embedded model for
GPT-4 or vLLM without anything else changing, and what the response cache keys on.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Backend = Literal["hf", "openai", "vllm"]
BACKENDS: tuple[str, ...] = ("hf", "openai", "vllm")


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class SamplingParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 means greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)


class LLMRequest(BaseModel):
    """One chat completion to run.

    `seed` and `sample_index` make sampled outputs reproducible and cacheable: the same request
    with another sample_index is a different draw (e.g. several judge samples of one episode).
    `session` optionally names a conversation whose later requests extend this one's prompt, so a
    backend may keep its KV cache between calls (the simulation passes "episode/agent").
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    messages: tuple[Message, ...]
    json_schema: dict[str, Any] | None = None
    sampling: SamplingParams = SamplingParams()
    seed: int = 0
    sample_index: int = 0
    session: str | None = Field(None, description="hint only; never part of the cache key")


FinishReason = Literal["stop", "length", "error"]


class LLMResponse(BaseModel):
    """The outcome of one request. A failed request has finish_reason='error' and `error` set."""

    text: str = ""
    parsed: Any = None
    finish_reason: FinishReason = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ModelSpec(BaseModel):
    """Which model plays a role: backend + model id or path + optional LoRA adapter + options.

    `model: embedded` means the embedded SmolLM2-135M-Instruct folder built by `make model`.
    Options are backend-specific (hf: device, dtype, load_in_4bit, max_batch_size; openai: base_url,
    api_key_env, max_concurrency, timeout_s, max_retries, prices; vllm: gpu_memory_utilization, ...).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Backend
    model: str
    adapter: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.model}" + (f"+{self.adapter}" if self.adapter else "")
