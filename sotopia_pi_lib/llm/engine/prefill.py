"""Prefill of many prompts in one forward, each on top of its own cached prefix.

Every forward on a 2-core CPU pays about the cost of one decode step (reading all the weights) before
it does any work, so prefilling 16 agents' 50-token turns one by one costs 16 of those. Here a group
of prompts runs together: each row holds its cached prefix right-aligned at column P, then its new
tokens right-aligned at the end of a Q-column query block; the columns between are a hole the mask
hides, positions are explicit, and pad queries attend only to themselves (so nothing is NaN). Rows
are grouped by new-token count, so padding wastes little.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

from . import kvcache
from .kvcache import BLOCK, KV, block_hashes

# A row joins a group while the padding it adds is at most the larger of PAD_TOKENS and
# PAD_FRACTION of the group's width. A forward has a fixed cost (reading all weights) of about the
# compute of PAD_TOKENS prompt tokens on a CPU, so more padding than that costs more than a separate
# forward would; short prompts gain from sharing a forward beyond that, hence the fraction of the
# width, kept small because padded tokens are computed like real ones. bench/sim_throughput.py reports
# the prefill's computed and reused tokens, forwards and time.
PAD_TOKENS, PAD_FRACTION = 32, 0.1


@dataclass
class PrefillItem:
    tokens: list[int]  # the whole prompt (plus the reply's forced opening)
    reused: int  # leading tokens whose KV `prefix` holds
    prefix: KV | None  # [layers, 2, heads, reused, dim]


def split_shared(prompts: list[tuple[list[int], int]], enabled: bool = True) -> tuple[list[int], list[int]]:
    """(ready, waiting) indices of (tokens, reused) prompts: a prompt waits a round when blocks it
    would compute are also computed by an earlier ready prompt (a judge rubric shared by a whole
    batch is then computed once, and the rest reuse it from the store). Without a store
    (enabled=False) nothing could be reused, so nothing waits."""
    if not enabled:
        return list(range(len(prompts))), []
    ready, waiting, seen = [], [], set()
    for i, (tokens, reused) in enumerate(prompts):
        fresh = block_hashes(tokens)[reused // BLOCK :]
        if ready and any(h in seen for h in fresh):
            waiting.append(i)
            continue
        seen.update(fresh)
        ready.append(i)
    return ready, waiting


def plan_groups(sizes: list[tuple[int, int]], max_tokens: int) -> list[list[int]]:
    """Indices of (new tokens, reused tokens) prompts, grouped so that padding each group to its
    longest row wastes little: sorted by new tokens, a row joins the current group while the padding
    it adds is within max(PAD_TOKENS, PAD_FRACTION x width) and the group's buffer (rows x (longest
    reused + longest new)) within max_tokens."""
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][0])
    groups: list[list[int]] = []
    for i in order:
        if groups:
            group = groups[-1]
            width = sizes[group[0]][0]
            prefix = max(sizes[j][1] for j in [*group, i])
            pad = width - sizes[i][0]
            if pad <= max(PAD_TOKENS, PAD_FRACTION * width) and (len(group) + 1) * (width + prefix) <= max_tokens:
                group.append(i)
                continue
        groups.append([i])
    return groups


@torch.inference_mode()
def prefill_group(net: Any, items: list[PrefillItem], pad_id: int) -> tuple[torch.Tensor, list[KV]]:
    """Logits after each prompt ([rows, vocab], float32) and each prompt's whole KV."""
    cfg = net.config
    layers, heads = cfg.num_hidden_layers, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    dtype, device = kv_dtype_device(net)
    news = [len(it.tokens) - it.reused for it in items]
    P, Q = max(it.reused for it in items), max(news)
    # Uninitialised but for each row's hole before its prefix (masked, yet it meets V with weight 0, so
    # it must not be NaN): the prefixes are copied in and the forward writes all Q query columns.
    buf = kvcache.uninitialised((layers, 2, len(items), heads, P + Q, head_dim), dtype, device)
    ids = torch.full((len(items), Q), pad_id, dtype=torch.long)
    positions = torch.zeros((len(items), Q), dtype=torch.long)
    mask = torch.zeros((len(items), 1, Q, P + Q), dtype=torch.bool)
    query_cols = torch.arange(P, P + Q)
    cols = torch.arange(P + Q)
    for r, (it, n) in enumerate(zip(items, news, strict=True)):
        buf[:, :, r, :, : P - it.reused] = 0
        if it.prefix is not None:
            buf[:, :, r, :, P - it.reused : P] = it.prefix
        ids[r, Q - n :] = torch.tensor(it.tokens[it.reused :])
        positions[r, Q - n :] = torch.arange(it.reused, len(it.tokens))
        first = P + Q - n
        prefix = (cols >= P - it.reused) & (cols < P)
        causal = (cols.unsqueeze(0) >= first) & (cols.unsqueeze(0) <= query_cols.unsqueeze(1))
        mask[r, 0] = prefix.unsqueeze(0) | causal
        mask[r, 0, torch.arange(Q), query_cols] = True  # pad queries see themselves only
    out = net(
        input_ids=ids.to(device), position_ids=positions.to(device), attention_mask=mask.to(device),
        cache=_GroupCache(buf, P), use_cache=True, logits_to_keep=1,
    )  # fmt: skip
    kvs = [
        torch.cat([buf[:, :, r, :, P - it.reused : P], buf[:, :, r, :, P + Q - n :]], dim=3)
        for r, (it, n) in enumerate(zip(items, news, strict=True))
    ]
    return out.logits[:, -1].float(), kvs


def kv_dtype_device(net: Any) -> tuple[torch.dtype, torch.device]:
    """Keys and values carry the hidden states' dtype, which is the embeddings' (a 4-bit model's first
    parameter may be packed uint8)."""
    weight = net.get_input_embeddings().weight
    return weight.dtype, weight.device


class _GroupLayer(DynamicLayer):
    def __init__(self, buf: torch.Tensor, layer: int, start: int) -> None:
        super().__init__()
        self.buf, self.layer, self.start = buf, layer, start
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        return None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):  # type: ignore[override]
        self.buf[self.layer, 0, :, :, self.start :] = key_states
        self.buf[self.layer, 1, :, :, self.start :] = value_states
        return self.buf[self.layer, 0], self.buf[self.layer, 1]

    def get_seq_length(self) -> int:
        return self.start

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.start + query_length, 0


class _GroupCache(Cache):
    def __init__(self, buf: torch.Tensor, start: int) -> None:
        super().__init__(layers=[_GroupLayer(buf, i, start) for i in range(buf.shape[0])])
