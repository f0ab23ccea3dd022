"""The packed grouped-query attention gives transformers' sdpa result for every call it takes."""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from sotopia_pi_lib.llm.engine.attention import packed_sdpa_forward


class _Layer(torch.nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


def _inputs(batch: int, q: int, k: int, kv_heads: int = 3, groups: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, q, kv_heads * groups, 16, generator=g).transpose(1, 2)  # as the model passes it
    key = torch.randn(batch, kv_heads, k, 16, generator=g)
    value = torch.randn(batch, kv_heads, k, 16, generator=g)
    mask = torch.ones(batch, 1, q, k, dtype=torch.bool).tril(k - q)
    mask[0, :, :, : k // 3] = False  # row 0: a left-padded hole, as in the batch buffer
    return query, key, value, mask


@pytest.mark.parametrize(("batch", "q", "k"), [(4, 2, 40), (2, 7, 64), (1, 30, 30), (3, 5, 50)])
def test_packed_equals_sdpa_for_multi_token_masked_queries(batch: int, q: int, k: int) -> None:
    layer = _Layer(3)
    query, key, value, mask = _inputs(batch, q, k)
    got, _ = packed_sdpa_forward(layer, query, key, value, mask, scaling=0.25)
    want, _ = sdpa_attention_forward(layer, query, key, value, mask, scaling=0.25)
    assert got.shape == want.shape == (batch, q, 9, 16)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the mask matters: row 0 sees a different history than with everything visible
    open_, _ = packed_sdpa_forward(layer, query, key, value, torch.ones_like(mask), scaling=0.25)
    assert not torch.allclose(open_[0], got[0], atol=1e-3)


def test_other_calls_go_to_transformers_sdpa() -> None:
    query, key, value, mask = _inputs(2, 1, 20)
    layer = _Layer(3)
    for args in ((query, key, value, mask), (query, key, value, None)):
        got, _ = packed_sdpa_forward(layer, *args)
        want, _ = sdpa_attention_forward(layer, *args)
        torch.testing.assert_close(got, want)
    q2, k2, v2, _ = _inputs(2, 6, 20, kv_heads=9, groups=1)  # no grouping: nothing to pack
    got, _ = packed_sdpa_forward(_Layer(1), q2, k2, v2, None)
    torch.testing.assert_close(got, sdpa_attention_forward(_Layer(1), q2, k2, v2, None)[0])
