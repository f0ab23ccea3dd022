"""The engine's settings: plain data, importable without touching transformers' internals."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineSettings:
    """How the engine decodes (the hf backend fills it from its options, see hf_load.HFOptions)."""

    stop_ids: tuple[int, ...]
    pad_id: int
    max_batch_size: int = 32
    max_batch_tokens: int = 32768
    kv_cache_bytes: int = 2 << 30
    jump_forward: bool = True
    pack_weights: bool = True  # on the CPU (cpu_linear.py); never for 4-bit weights
    ignore_versions: bool = False  # run outside the tested versions (the self-check still decides)
