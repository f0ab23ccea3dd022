"""The hf backend's options and weight loading (transformers, optional peft adapter, optional 4-bit).

Loading gives a plain transformers model, whichever path then decodes it (the engine changes it
further, see engine.prepare). Kept apart from decoding so that building a model spec, checking its
options and computing its identity never import torch or touch the weights: a fully cached re-run
must not load a model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import BackendError, ConfigError
from .types import ModelSpec

EMBEDDED = "embedded"


class HFOptions(BaseModel):
    """`options:` of an hf model spec. Memory bounds are in tokens of KV cache (the embedded model
    holds 46 KB per token in float32: 30 layers x 2 x 3 heads x 64 dims x 4 bytes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Literal["cpu", "cuda", "auto"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "auto",
        description="auto: bfloat16 on CUDA and on CPUs with native bf16 (AVX512-BF16 or AMX), else float32",
    )
    load_in_4bit: bool = Field(False, description="bitsandbytes NF4 with double quantization (QLoRA's)")
    max_batch_size: int = Field(32, ge=1, description="sequences decoded together")
    max_batch_tokens: int = Field(32768, ge=64, description="KV tokens the running batch may hold")
    kv_cache_bytes: int = Field(2 << 30, ge=0, description="KV kept across calls (0: no reuse)")
    jump_forward: bool = Field(True, description="feed text the JSON grammar forces without a step per token")
    pack_weights: bool = Field(
        True, description="CPU: keep linear weights in oneDNN's layout (engine/cpu_linear.py; bf16 bit-identical)"
    )
    engine: Literal["auto", "on", "off"] = Field(
        "auto",
        description="auto: the engine (engine/) when the installed torch and transformers are the tested "
        "series and its self-check passes, else the plain transformers path with a warning; on: the "
        "engine whatever the versions (a failed self-check is an error); off: the plain path",
    )


def parse_options(spec: ModelSpec) -> HFOptions:
    known = list(HFOptions.model_fields)
    for key in spec.options:
        if key not in known:
            raise ConfigError(
                f"model spec {spec.label}: unknown hf option {key!r}; known options: {', '.join(known)}"
            )
    try:
        return HFOptions.model_validate(spec.options)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(map(str, err["loc"]))
        raise ConfigError(f"model spec {spec.label}: option {where}: {err['msg']}") from None


def resolve_model(name: str) -> str:
    """`embedded` -> the saved SmolLM2 folder; a path -> absolute path; anything else is a hub id."""
    if name == EMBEDDED:
        from ..data import ensure_embedded_model

        return str(ensure_embedded_model())
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


@dataclass
class Loaded:
    """What generation needs: the module to call, its tokenizer and the settings it was loaded with."""

    net: Any  # the causal LM module (LoRA layers injected when there are adapters)
    tokenizer: Any
    device: Any
    dtype: Any
    stop_ids: tuple[int, ...]
    vocab_size: int
    peft: Any = None  # the PeftModel holding the adapters by name (None without adapters)
    adapters: tuple[str, ...] = ()  # their names

    @contextmanager
    def active(self, adapter: str | None) -> Iterator[None]:
        """Run `net` with this adapter (its name), or with none (the base weights)."""
        if adapter is not None and adapter not in self.adapters:
            raise BackendError(f"adapter {adapter!r} is not loaded (loaded: {list(self.adapters)})")
        if self.peft is None:
            yield
        elif adapter is None:
            with self.peft.disable_adapter():
                yield
        else:
            self.peft.set_adapter(adapter)
            yield


def pick_device(opt: HFOptions) -> str:
    import torch

    if opt.device == "cuda" and not torch.cuda.is_available():
        raise BackendError("hf option device=cuda but torch sees no CUDA GPU; use device: cpu or auto")
    if opt.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return opt.device


def pick_dtype(opt: HFOptions, device: str) -> Any:
    import torch

    if opt.dtype != "auto":
        return getattr(torch, opt.dtype)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (x86 AVX512-BF16 or AMX).

    There bf16 inference is 1.35x (batch 1) to 1.6x (batch 32) faster than float32 with the embedded
    model (bench/llm_throughput.py); without it torch emulates bf16 and float32 is faster. The probes
    are private torch helpers, hence the getattr: a torch without them gets float32.
    """
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def nf4_config(compute_dtype: Any) -> Any:
    """The 4-bit quantization of QLoRA (Dettmers et al. 2023) as the paper trains with it: NF4 with double
    quantization, computing in `compute_dtype`. Training and serving load a base the same way, so an
    adapter trained on the 4-bit base is served on the weights it was trained against."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def load(model: str, adapters: Mapping[str, str], opt: HFOptions) -> Loaded:
    """The model with every adapter (name -> folder) loaded beside each other on the one base."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(opt)
    dtype = pick_dtype(opt, device)
    kwargs: dict[str, Any] = {"dtype": dtype, "config": plain_config(model)}
    if opt.load_in_4bit:
        kwargs["quantization_config"] = nf4_config(dtype)
        kwargs["device_map"] = {"": device}
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        net = AutoModelForCausalLM.from_pretrained(model, **kwargs)
    except Exception as e:  # noqa: BLE001 -- name the model, not a deep traceback
        raise BackendError(f"could not load hf model {model!r}: {type(e).__name__}: {e}") from e
    if not opt.load_in_4bit:
        net = net.to(device)
    peft = attach_adapters(net, adapters) if adapters else None
    if peft is not None:
        net = peft.base_model.model  # the same module class as the base, its LoRA layers injected
    net.eval()
    return Loaded(
        net, tokenizer, torch.device(device), dtype, stop_ids(net, tokenizer), net.config.vocab_size,
        peft, tuple(adapters),
    )  # fmt: skip


def plain_config(model: str) -> Any:
    """The model's config, minus the `quantization_config: gguf` that a folder saved from a de-quantised
    GGUF keeps although its weights are plain float32 safetensors (the embedded model): transformers
    would attach a GGUF quantizer that refuses bitsandbytes and warns about casts on every bfloat16
    load. Kept when the folder really holds a .gguf file."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model)
    except Exception as e:  # noqa: BLE001
        raise BackendError(f"could not read the config of hf model {model!r}: {type(e).__name__}: {e}") from e
    quant = getattr(config, "quantization_config", None)
    has_gguf = Path(model).is_dir() and any(Path(model).glob("*.gguf"))
    if isinstance(quant, dict) and quant.get("quant_method") == "gguf" and not has_gguf:
        del config.quantization_config
    return config


def attach_adapters(net: Any, adapters: Mapping[str, str]) -> Any:
    """Every LoRA adapter on the one base with peft, by name, unmerged: the variants of a policy share
    the base weights (and one KV store, kept apart per adapter) instead of one merged copy each."""
    from peft import PeftModel

    peft_model = None
    for name, folder in adapters.items():
        try:
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(net, folder, adapter_name=name)
            else:
                peft_model.load_adapter(folder, adapter_name=name)
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"could not load adapter {folder!r}: {type(e).__name__}: {e}") from e
    assert peft_model is not None
    peft_model.eval()
    return peft_model


def stop_ids(net: Any, tokenizer: Any) -> tuple[int, ...]:
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(net.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, list | tuple):
            ids.update(int(i) for i in source)
    if not ids:
        raise BackendError("the tokenizer defines no end-of-sequence token; cannot tell when a reply ends")
    return tuple(sorted(ids))


def context_limit(config: Any) -> int:
    """Tokens a sequence may hold: the position limit, or the sliding window when there is one (the
    batch KV buffer keeps every token, which matches a sliding-window model only inside its window)."""
    limit = int(getattr(config, "max_position_embeddings", None) or 1 << 20)
    window = getattr(config, "sliding_window", None)
    return min(limit, int(window)) if window else limit
