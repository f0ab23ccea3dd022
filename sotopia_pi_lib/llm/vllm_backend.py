"""In-process vLLM on a GPU, for large runs of the local policy (with its LoRA adapter).

vLLM is imported only here, when a spec selects it, so the rest of the library installs and runs
without it. Structured output uses vLLM's own guided decoding: `StructuredOutputsParams` on the
`structured_outputs` field of SamplingParams (vLLM >= 0.10.2, the only API from 0.12 on), or the
older `GuidedDecodingParams` on `guided_decoding` where that is what the installed vLLM has.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import BackendError, ConfigError
from .base import LLM
from .fingerprint import adapter_hash, hub_weights_hash, is_local_model, tokenizer_hash, weights_hash
from .json_output import check_schemas, derive_seed, parse_structured
from .types import LLMRequest, LLMResponse, ModelSpec

log = logging.getLogger(__name__)
INSTALL_HINT = "install the GPU extra (`pip install -e .[gpu]`) on a machine with an NVIDIA GPU and CUDA"


class VLLMOptions(BaseModel):
    """`spec.options` of the vllm backend (passed on to `vllm.LLM`)."""

    model_config = ConfigDict(extra="forbid")

    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    max_model_len: int | None = Field(None, ge=1)
    dtype: str = "auto"
    quantization: str | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    max_lora_rank: int | None = Field(None, ge=1, description="default: the adapter's r, rounded up")
    enforce_eager: bool = False


def sampling_kwargs(request: LLMRequest) -> dict[str, Any]:
    """vLLM SamplingParams arguments for a request (structured output is added separately)."""
    s = request.sampling
    return {
        "n": 1,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.max_tokens,
        "seed": derive_seed(request.seed, request.sample_index),
    }


def structured_kwargs(schema: dict[str, Any], sampling_module: ModuleType) -> dict[str, Any]:
    """The guided-JSON argument of SamplingParams in whichever API the installed vLLM has."""
    if hasattr(sampling_module, "StructuredOutputsParams"):
        return {"structured_outputs": sampling_module.StructuredOutputsParams(json=schema)}
    if hasattr(sampling_module, "GuidedDecodingParams"):
        return {"guided_decoding": sampling_module.GuidedDecodingParams(json=schema)}
    raise BackendError(
        "this vLLM has neither StructuredOutputsParams nor GuidedDecodingParams; "
        "install a vLLM release from 0.6.4 on"
    )


def chat_messages(request: LLMRequest) -> list[dict[str, str]]:
    return [m.model_dump() for m in request.messages]


def to_response(output: Any, request: LLMRequest, latency_s: float) -> LLMResponse:
    """An LLMResponse from a vLLM RequestOutput (its first completion); the JSON is validated, since
    a guided reply cut off by max_tokens does not parse."""
    completion = output.outputs[0]
    text = completion.text
    finish = "length" if completion.finish_reason == "length" else "stop"
    response = LLMResponse(
        text=text,
        finish_reason=finish,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(completion.token_ids),
        latency_s=latency_s,
    )
    if request.json_schema is None:
        return response
    parsed, problem = parse_structured(text, request.json_schema)
    if problem is not None:
        return response.model_copy(
            update={"finish_reason": "error", "error": f"{problem} (finish: {finish})"}
        )
    return response.model_copy(update={"parsed": parsed})


def lora_rank(adapter: str) -> int:
    """vLLM's max_lora_rank for an adapter: its r rounded up to a power of two, at least 8."""
    config = Path(adapter) / "adapter_config.json"
    try:
        r = int(json.loads(config.read_text(encoding="utf-8"))["r"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{config}: cannot read the LoRA rank `r`: {exc}") from None
    rank = 8
    while rank < r:
        rank *= 2
    return rank


def require_gpu() -> None:
    try:
        import torch
    except ImportError as exc:
        raise BackendError(f"the vllm backend needs torch with CUDA: {exc}; {INSTALL_HINT}") from None
    if not torch.cuda.is_available():
        raise BackendError(
            f"the vllm backend needs a CUDA GPU and none is visible; {INSTALL_HINT}, "
            "or use the hf backend on the CPU"
        )


def import_vllm() -> ModuleType:
    try:
        import vllm
    except ImportError as exc:
        raise BackendError(f"the vllm backend needs the `vllm` package ({exc}); {INSTALL_HINT}") from None
    return vllm


class VLLMModel(LLM):
    """A vllm.LLM built at construction (vLLM loads weights and reserves GPU memory up front)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        try:
            self.options = VLLMOptions.model_validate(spec.options)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(
                f"model spec {spec.label}: options.{'.'.join(map(str, err['loc']))}: {err['msg']}"
            ) from None
        vllm = import_vllm()
        require_gpu()
        from vllm import sampling_params
        from vllm.lora.request import LoRARequest

        self._sampling_module = sampling_params
        self._model_path = self._resolve_model()
        self._lora = LoRARequest("adapter", 1, spec.adapter) if spec.adapter else None
        self._identity: dict[str, Any] | None = None
        self._llm = vllm.LLM(model=self._model_path, **self._engine_kwargs())

    def _resolve_model(self) -> str:
        if self.spec.model != "embedded":
            return self.spec.model
        from ..data import ensure_embedded_model

        return str(ensure_embedded_model())

    def _engine_kwargs(self) -> dict[str, Any]:
        o = self.options
        kwargs: dict[str, Any] = {
            "gpu_memory_utilization": o.gpu_memory_utilization,
            "dtype": o.dtype,
            "tensor_parallel_size": o.tensor_parallel_size,
            "enforce_eager": o.enforce_eager,
        }
        if o.max_model_len is not None:
            kwargs["max_model_len"] = o.max_model_len
        if o.quantization is not None:
            kwargs["quantization"] = o.quantization
        if self.spec.adapter:
            kwargs |= {"enable_lora": True, "max_lora_rank": o.max_lora_rank or lora_rank(self.spec.adapter)}
        return kwargs

    def identity(self) -> dict[str, Any]:
        """Weights, tokenizer and adapter by content hash (as the hf backend does), plus what changes
        the numerics; vLLM's kernels differ from transformers', so the backend name stays in too."""
        if self._identity is None:
            path = self._model_path
            if is_local_model(path):
                weights, tokenizer = weights_hash(Path(path)), tokenizer_hash(Path(path))
            else:
                weights, tokenizer = hub_weights_hash(path)
            self._identity = {
                "backend": "vllm", "model": self.spec.model, "weights_sha256": weights,
                "tokenizer": tokenizer,
                "adapter_sha256": adapter_hash(Path(self.spec.adapter)) if self.spec.adapter else None,
                "dtype": self.options.dtype, "quantization": self.options.quantization,
            }  # fmt: skip
        return dict(self._identity)

    def _sampling_params(self, request: LLMRequest) -> Any:
        kwargs = sampling_kwargs(request)
        if request.json_schema is not None:
            kwargs |= structured_kwargs(request.json_schema, self._sampling_module)
        return self._sampling_module.SamplingParams(**kwargs)

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        requests = list(requests)
        check_schemas(requests)
        if not requests:
            return []
        start = time.perf_counter()
        try:
            outputs = self._chat(requests, progress)
        except Exception as exc:  # noqa: BLE001 -- isolate the request vLLM rejects (e.g. too long)
            if len(requests) == 1:
                log.warning("%s: request failed: %s", self.spec.label, exc)
                return [LLMResponse(finish_reason="error", error=f"vLLM: {type(exc).__name__}: {exc}")]
            return [r for request in requests for r in self.generate([request])]
        latency = time.perf_counter() - start
        return [to_response(out, req, latency) for out, req in zip(outputs, requests, strict=True)]

    def _chat(self, requests: list[LLMRequest], progress: bool) -> list[Any]:
        return self._llm.chat(
            [chat_messages(r) for r in requests],
            sampling_params=[self._sampling_params(r) for r in requests],
            use_tqdm=progress,
            lora_request=self._lora,
        )

    def close(self) -> None:
        self._llm = None
