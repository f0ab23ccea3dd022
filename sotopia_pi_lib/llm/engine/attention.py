"""Grouped-query attention for multi-token steps with a mask, registered with transformers.

The decode loop feeds several tokens per row at once (forced JSON text) and prefills prompts on top of
cached prefixes, both with an explicit 4-D mask. For such calls transformers' sdpa either copies K and V
once per query group (repeat_kv) or, with TRANSFORMERS_SDPA_FORCE_GQA, lets torch broadcast them; on a
CPU in bfloat16 both are slow for short queries over a long cache, where reading K and V is most of
the work. transformers already avoids both for a single query token by
folding a group's query heads into the query axis (pack_gqa); this does the same for any query length:
the n query heads that share a KV head become n x q query rows, each group's mask rows repeated, so one
SDPA call reads every cached K/V once (bench/engines.py times the engine this is part of). Same result up to float rounding; everything else (no
mask, one query token, a per-head mask) goes to transformers' own sdpa.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

PACKED_SDPA = "sotopia_pi_packed_sdpa"


def packed_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,  # [batch, heads, q, dim]
    key: torch.Tensor,  # [batch, kv_heads, k, dim]
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,  # [batch or 1, 1, q, k]
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, q_len, dim = query.shape
    if (
        groups == 1
        or q_len == 1
        or dropout
        or attention_mask is None
        or attention_mask.dim() != 4
        or attention_mask.shape[1] != 1
        or kwargs.get("position_bias") is not None
        or kwargs.get("softcap") is not None
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    packed = query.reshape(batch, heads // groups, groups * q_len, dim)  # rows ordered (group member, q)
    out = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=attention_mask.repeat(1, 1, groups, 1), scale=scaling
    )
    return out.reshape(batch, heads, q_len, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(PACKED_SDPA, packed_sdpa_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_SDPA, sdpa_mask)
