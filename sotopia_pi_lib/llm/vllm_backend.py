"""In-process vLLM on a GPU, for large runs of the local policy and its LoRA adapters.

vLLM is imported only here, when a spec selects it, so the rest of the library installs and runs
without it. Structured output uses vLLM's own guided decoding: `StructuredOutputsParams` on the
`structured_outputs` field of SamplingParams (vLLM >= 0.10.2, the only API from 0.12 on), or the
older `GuidedDecodingParams` on `guided_decoding` where that is what the installed vLLM has.

A VLLMModel is one variant (the base, or the base with one adapter). Variants built through an
EnginePool (pool.py) share one VLLMBase: one `vllm.LLM`, built on the first request the response
cache cannot answer (a fully cached plan never builds it), with `enable_lora`, `max_loras` (the
adapters registered by then) and `max_lora_rank` (the largest of their `r`, rounded up) from the
adapters' configs; each request carries its variant's `LoRARequest` (one id per adapter), so
requests of several variants can share a batch. Prompts are rendered by the project's chat-template
code (chat_template.py: a template that refuses a system message gets it merged into the first user
turn, as in training) and handed to vLLM as token ids.
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
from .chat_template import encode_chat
from .fingerprint import adapter_hash, hub_weights_hash, is_local_model, tokenizer_hash, weights_hash
from .json_output import check_schemas, derive_seed
from .schema import parse_json_output
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
    max_lora_rank: int | None = Field(None, ge=1, description="default: the largest adapter r, rounded up")
    enforce_eager: bool = False
    load_format: str = Field("auto", description='"dummy": random weights (checks of the machinery only)')


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
    parsed, problem = parse_json_output(text, request.json_schema, surrounding_text=True)
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


def parse_options(spec: ModelSpec) -> VLLMOptions:
    try:
        return VLLMOptions.model_validate(spec.options)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"model spec {spec.label}: options.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None


class VLLMBase:
    """One `vllm.LLM` over a base model, shared by its variants; built lazily, with their adapters."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec.model_copy(update={"adapter": None})
        self.options = parse_options(spec)
        self._adapters: dict[str, int] = {}  # adapter folder -> its LoRA id (1, 2, ...)
        self._users: set[int] = set()
        self._llm: Any = None
        self._lora_slots = 0  # max_loras the engine was built with (0: built without LoRA)
        self.builds = 0

    @property
    def model_path(self) -> str:
        if self.spec.model != "embedded":
            return self.spec.model
        from ..data import ensure_embedded_model

        return str(ensure_embedded_model())

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def register(self, adapter: str | None) -> Any:
        """The LoRARequest of an adapter folder (None for the base), registering it on first sight."""
        if adapter is None:
            return None
        if adapter not in self._adapters:
            lora_rank(adapter)  # a readable config, checked before any GPU work
            self._adapters[adapter] = len(self._adapters) + 1
        return (adapter, self._adapters[adapter])

    def acquire(self, user: object) -> None:
        self._users.add(id(user))

    def release(self, user: object) -> None:
        self._users.discard(id(user))
        if not self._users:
            self.unload()

    def unload(self) -> None:
        if self._llm is None:
            return
        self._llm = None
        import gc

        gc.collect()
        try:
            import torch

            torch.cuda.empty_cache()
        except ImportError:
            pass

    def engine(self) -> Any:
        """The vllm.LLM, built now if needed. An engine built with fewer LoRA slots than adapters are
        registered now (or without LoRA) is rebuilt: vLLM fixes both when it starts."""
        if self._llm is not None and len(self._adapters) > self._lora_slots:
            log.info("%s: %d adapters registered, the engine has %d LoRA slots; rebuilding",
                     self.spec.label, len(self._adapters), self._lora_slots)  # fmt: skip
            self.unload()
        if self._llm is None:
            vllm = import_vllm()
            require_gpu()
            self._llm = vllm.LLM(model=self.model_path, **self.engine_kwargs())
            self._lora_slots = len(self._adapters)
            self.builds += 1
        return self._llm

    def engine_kwargs(self) -> dict[str, Any]:
        o = self.options
        kwargs: dict[str, Any] = {
            "gpu_memory_utilization": o.gpu_memory_utilization,
            "dtype": o.dtype,
            "tensor_parallel_size": o.tensor_parallel_size,
            "enforce_eager": o.enforce_eager,
        }
        if o.load_format != "auto":
            kwargs["load_format"] = o.load_format
        if o.max_model_len is not None:
            kwargs["max_model_len"] = o.max_model_len
        if o.quantization is not None:
            kwargs["quantization"] = o.quantization
        if self._adapters:
            rank = max(lora_rank(a) for a in self._adapters)
            kwargs |= {"enable_lora": True, "max_loras": len(self._adapters), "max_lora_rank": o.max_lora_rank or rank}
        return kwargs

    def generate(self, requests: Sequence[LLMRequest], adapters: Sequence[Any], progress: bool = False) -> list[LLMResponse]:
        """One vLLM batch; adapters[i] is request i's registered adapter (None: the base)."""
        requests = list(requests)
        check_schemas(requests)
        if not requests:
            return []
        llm = self.engine()
        from vllm import sampling_params
        from vllm.lora.request import LoRARequest

        loras = [None if a is None else LoRARequest(f"adapter{a[1]}", a[1], a[0]) for a in adapters]
        start = time.perf_counter()
        try:
            tokenizer = llm.get_tokenizer()
            prompts = [{"prompt_token_ids": encode_chat(tokenizer, r.messages)} for r in requests]
            params = [self._sampling_params(r, sampling_params) for r in requests]
            outputs = llm.generate(prompts, sampling_params=params, use_tqdm=progress, lora_request=loras)
        except Exception as exc:  # noqa: BLE001 -- isolate the request vLLM rejects (e.g. too long)
            if len(requests) == 1:
                log.warning("%s: request failed: %s", self.spec.label, exc)
                return [LLMResponse(finish_reason="error", error=f"vLLM: {type(exc).__name__}: {exc}")]
            return [r for req, a in zip(requests, adapters, strict=True) for r in self.generate([req], [a])]
        latency = time.perf_counter() - start
        return [to_response(out, req, latency) for out, req in zip(outputs, requests, strict=True)]

    @staticmethod
    def _sampling_params(request: LLMRequest, module: ModuleType) -> Any:
        kwargs = sampling_kwargs(request)
        if request.json_schema is not None:
            kwargs |= structured_kwargs(request.json_schema, module)
        return module.SamplingParams(**kwargs)


class VLLMModel(LLM):
    """One variant of a vLLM base model (with `spec.adapter`, a LoRA adapter on it)."""

    Base = VLLMBase

    def __init__(self, spec: ModelSpec, base: VLLMBase | None = None) -> None:
        self.spec = spec
        self.base = base if base is not None else VLLMBase(spec)
        self.options = self.base.options
        self._lora = self.base.register(spec.adapter)
        self.base.acquire(self)
        self._identity: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        """Weights, tokenizer and adapter by content hash (as the hf backend does), plus what changes
        the numerics; vLLM's kernels differ from transformers', so the backend name stays in too."""
        if self._identity is None:
            path = self.base.model_path
            if is_local_model(path):
                weights, tokenizer = weights_hash(Path(path)), tokenizer_hash(Path(path))
            else:
                weights, tokenizer = hub_weights_hash(path)
            self._identity = {
                "backend": "vllm", "model": self.spec.model, "weights_sha256": weights,
                "tokenizer": tokenizer,
                "adapter_sha256": adapter_hash(Path(self.spec.adapter)) if self.spec.adapter else None,
                "dtype": self.options.dtype, "quantization": self.options.quantization,
                "load_format": self.options.load_format,  # dummy weights answer differently
            }  # fmt: skip
        return dict(self._identity)

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        self.base.acquire(self)
        return self.base.generate(requests, [self._lora] * len(requests), progress)

    def close(self) -> None:
        """This variant is done: the engine goes when no other variant uses it."""
        self.base.release(self)
