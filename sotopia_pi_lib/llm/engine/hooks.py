"""Every private transformers and torch hook the engine relies on, the versions it was tested with,
and the checks that decide, when a model loads, whether the engine may run.

A hook here is anything the engine uses outside a library's stable, documented API: classes it
subclasses whose protocol is internal (transformers' cache layers), keyword arguments of a model's
forward that transformers renames between releases (`cache`, `logits_to_keep`), registries it adds to,
and torch operators with a leading underscore. Any release may move one. So the hf backend starts the
engine only when (1) the installed torch and transformers are of the tested release series (or the
spec says `engine: on`), (2) every hook below is present, and (3) a self-check on the loaded model
gives the plain forward's logits through the engine's own path: grouped prefill on a kept prefix,
a decode step feeding several tokens in some rows and one in others, packed attention and packed
weights. Otherwise it runs its plain path (hf_plain.py) and logs why. The check costs a handful of
forwards on a SEQUENCE-token input, once per loaded model.

A hook that breaks silently is the danger: a model whose forward takes **kwargs would ignore a
renamed `cache=` argument and compute every step without the cached tokens. The self-check compares
logits, so it catches that as well as a missing name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TESTED_VERSIONS = {"torch": "2.13.0", "transformers": "5.24.0", "xgrammar": "0.2.8"}
# `engine: auto` runs the engine on these release series (major.minor) only.
SUPPORTED_SERIES = {"torch": "2.13", "transformers": "5.24"}
SEQUENCE = 24  # tokens of the self-check's input
SPLIT, EXTEND = 16, 21  # first prefill; second prefill on that prefix; then steps up to SEQUENCE
# Largest |engine - plain| logit difference accepted, relative to the largest |logit|. Measured on the
# embedded model: float32 paths differ by rounding (< 5e-5), bfloat16 ones by 1.8% (different kernels
# and summation orders). Broken hooks measured the same way: positions off by one 11%, a step mask that
# lets padding through 17%, an ignored cache raises (shapes no longer match).
TOLERANCE = {"float32": 1e-3, "bfloat16": 5e-2, "float16": 5e-2}


class EngineUnavailable(Exception):
    """The engine cannot run here; the message says why. `modified`: the model was already changed
    (attention swapped, weights packed) when the check failed, so the plain path must reload it."""

    def __init__(self, reason: str, modified: bool = False) -> None:
        super().__init__(reason)
        self.modified = modified


@dataclass(frozen=True)
class Hook:
    name: str  # what is used, as a dotted path
    used_in: str  # engine module(s)
    why: str
    present: Callable[[], bool]  # a cheap static check: the name exists with the expected shape


def _has(module: str, *names: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            target: Any = importlib.import_module(module)
        except ImportError:
            return False
        for name in names:
            obj = target
            for part in name.split("."):
                if not hasattr(obj, part):
                    return False
                obj = getattr(obj, part)
        return True

    return check


def _mkldnn_ops() -> bool:
    import torch

    ops = ("_reorder_linear_weight", "_linear_pointwise", "_is_mkldnn_bf16_supported")
    return all(hasattr(torch.ops.mkldnn, op) for op in ops)


HOOKS: tuple[Hook, ...] = (
    Hook(
        "transformers.cache_utils.Cache(layers=[...])", "batch_kv.py, prefill.py",
        "a Cache made of the engine's own layers, handed to the model's forward",
        _has("transformers.cache_utils", "Cache"),
    ),
    Hook(
        "transformers.cache_utils.DynamicLayer: is_initialized, lazy_initialization, update, "
        "get_seq_length, get_mask_sizes", "batch_kv.py, prefill.py",
        "layers that write keys and values into the engine's preallocated buffers instead of concatenating",
        _has("transformers.cache_utils", "DynamicLayer.lazy_initialization", "DynamicLayer.update",
             "DynamicLayer.get_seq_length", "DynamicLayer.get_mask_sizes"),
    ),  # fmt: skip
    Hook(
        "model forward keywords cache=, logits_to_keep=, explicit position_ids and a 4-D boolean "
        "attention_mask", "decode.py, prefill.py",
        "rows of different lengths in one buffer; logits of the last position only",
        lambda: True,  # keyword names cannot be checked statically (forward takes **kwargs): the self-check does
    ),
    Hook(
        "transformers.AttentionInterface.register, transformers.masking_utils.ALL_MASK_ATTENTION_FUNCTIONS, "
        "sdpa_mask", "attention.py",
        "registers the packed grouped-query attention under its own name",
        _has("transformers", "AttentionInterface.register"),
    ),
    Hook(
        "transformers.integrations.sdpa_attention.sdpa_attention_forward", "attention.py",
        "the calls packed attention does not handle go to transformers' own sdpa",
        _has("transformers.integrations.sdpa_attention", "sdpa_attention_forward"),
    ),
    Hook(
        "PreTrainedModel.set_attn_implementation, config._attn_implementation; attention modules' "
        "num_key_value_groups", "__init__.py, attention.py",
        "switch a loaded model to packed attention; the query heads per KV head",
        _has("transformers", "PreTrainedModel.set_attn_implementation"),
    ),
    Hook(
        "torch.ops.mkldnn._reorder_linear_weight, _linear_pointwise, _is_mkldnn_bf16_supported",
        "cpu_linear.py", "linear weights kept in oneDNN's blocked layout (CPU only)", _mkldnn_ops,
    ),
)
# Not the engine's, listed so that every private hook of the hf backend is in one place: hf_load.py's
# dtype `auto` probes torch.cpu._is_avx512_bf16_supported and _is_amx_tile_supported through getattr
# (missing: float32, which is always correct).


def installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_problem() -> str | None:
    """Why the installed torch/transformers are not ones the engine was tested with, or None."""
    for package, series in SUPPORTED_SERIES.items():
        found = installed_version(package) or "not installed"
        base = found.split("+")[0]
        if base != series and not base.startswith(series + "."):
            return (
                f"{package} {found} is outside the engine's tested series {series}.x "
                f"(tested: {TESTED_VERSIONS[package]}; `engine: on` runs it anyway, after its self-check)"
            )
    return None


def missing_hook() -> str | None:
    for hook in HOOKS:
        try:
            ok = hook.present()
        except Exception:  # noqa: BLE001 -- a hook that raises when probed is as good as missing
            ok = False
        if not ok:
            return f"private hook {hook.name} ({hook.used_in}) is missing"
    return None


def check_layers(config: Any) -> str | None:
    """The engine keeps one KV buffer of every token for full-attention layers only."""
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    unsupported = kinds - {"full_attention", "sliding_attention"}
    if unsupported:
        return f"the engine decodes full-attention transformers only; this model has {sorted(unsupported)} layers"
    return None


def check_input(vocab_size: int) -> list[int]:
    """A fixed token sequence of ordinary ids (spread over the vocabulary, clear of the low ids where
    tokenizers keep their special tokens)."""
    low = min(1000, vocab_size // 4)
    return [low + (i * 7919) % (vocab_size - low) for i in range(SEQUENCE)]


def reference_logits(net: Any, ids: list[int]) -> Any:
    """The plain forward's logits at every position: what the engine's path must reproduce."""
    import torch

    with torch.inference_mode():
        return net(input_ids=torch.tensor([ids], device=net.device)).logits[0].float()


def self_check(net: Any, ids: list[int], reference: Any, pad_id: int) -> str | None:
    """Run `ids` through the engine's path and compare with `reference`; None when they agree.

    Row A prefills ids[:SPLIT], then ids[SPLIT:EXTEND] on that kept prefix (prefill on a prefix,
    masked multi-token attention); row B is a copy of A's first prefill. Then one step feeds A two
    tokens and B one (uneven rows: padding, per-row positions and masks), and one step feeds one
    token to each. Every logit the engine produced is compared with the plain forward's."""
    import torch

    from .batch_kv import BatchKV
    from .decode import forward_step
    from .prefill import PrefillItem, kv_dtype_device, prefill_group

    cfg = net.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    got: list[tuple[int, Any]] = []  # (position, logits there)
    with torch.inference_mode():
        logits, kvs = prefill_group(net, [PrefillItem(ids[:SPLIT], 0, None)], pad_id)
        got.append((SPLIT - 1, logits[0]))
        first = kvs[0]
        logits, kvs = prefill_group(net, [PrefillItem(ids[:EXTEND], SPLIT, first)], pad_id)
        got.append((EXTEND - 1, logits[0]))
        dtype, device = kv_dtype_device(net)
        batch = BatchKV(cfg.num_hidden_layers, cfg.num_key_value_heads, head_dim, dtype, device, 2)
        batch.add(kvs[0])
        batch.add(first)
        step = forward_step(net, batch, [ids[EXTEND : EXTEND + 2], ids[SPLIT : SPLIT + 1]], pad_id).float()
        got += [(EXTEND + 1, step[0]), (SPLIT, step[1])]
        step = forward_step(net, batch, [ids[EXTEND + 2 : EXTEND + 3], ids[SPLIT + 1 : SPLIT + 2]], pad_id)
        got += [(EXTEND + 2, step[0].float()), (SPLIT + 1, step[1].float())]
    dtype_name = str(dtype).removeprefix("torch.")
    tolerance = TOLERANCE.get(dtype_name, TOLERANCE["bfloat16"])
    worst = 0.0
    for position, logits in got:
        expected = reference[position].to(logits.device)
        scale = float(expected.abs().max()) or 1.0
        worst = max(worst, float((logits - expected).abs().max()) / scale)
    if not worst <= tolerance:  # also catches NaN
        return (
            f"the engine's self-check failed: its logits differ from the plain forward's by {worst:.2%} "
            f"of the largest logit (tolerance {tolerance:.1%} in {dtype_name}); a private hook "
            "of transformers or torch behaves differently from the tested versions"
        )
    return None
