"""A tiny random Llama for the engine tests (no files needed, runs in a second), and the reference the
engine is checked against: transformers' own forward with its DynamicCache."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from sotopia_pi_lib.llm.engine import kvcache

VOCAB = 97


def tiny_llama(dtype: torch.dtype = torch.float32, attention_bias: bool = False) -> LlamaForCausalLM:
    """A fresh two-layer Llama with grouped-query attention (4 heads, 2 KV heads), seeded weights."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, attention_bias=attention_bias,
    )  # fmt: skip
    return LlamaForCausalLM(config).to(dtype).eval()


@torch.inference_mode()
def plain_forward(net: LlamaForCausalLM, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(last position's logits, KV as [layers, 2, kv_heads, len, head_dim]) from one plain forward."""
    cache = DynamicCache()
    out = net(input_ids=torch.tensor([ids]), cache=cache, use_cache=True)
    kv = torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers])
    return out.logits[0, -1], kv


def nan_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """New KV buffers start as NaN, not as the zeros fresh memory happens to hold: a masked column still
    meets V with weight 0, so any uninitialised column a step reads would turn its output into NaN."""
    monkeypatch.setattr(
        kvcache, "uninitialised", lambda shape, dtype, device: torch.full(shape, float("nan"), dtype=dtype, device=device)
    )
