"""Grouped prefill on top of cached prefixes, checked against transformers' plain forward on a tiny
random Llama; and how prompts are grouped and deferred."""

from __future__ import annotations

import pytest
import torch
from tiny_llama import nan_buffers, plain_forward, tiny_llama  # tests/ is on sys.path (no package)
from transformers import LlamaForCausalLM

from sotopia_pi_lib.llm.engine.kvcache import BLOCK
from sotopia_pi_lib.llm.engine.prefill import PrefillItem, plan_groups, prefill_group, split_shared


@pytest.fixture(scope="module")
def tiny() -> LlamaForCausalLM:
    return tiny_llama()


def test_group_prefill_equals_each_prompt_alone(tiny: LlamaForCausalLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows with different cached prefixes (none, short, long) and different new lengths. The group's
    buffer starts as NaN: a row's hole before its prefix is masked yet meets V with weight 0."""
    nan_buffers(monkeypatch)
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (7, 20, 33, 12)]
    reused = [0, 5, 30, 11]
    items = [
        PrefillItem(p, r, plain_forward(tiny, p[:r])[1] if r else None) for p, r in zip(prompts, reused, strict=True)
    ]
    logits, kvs = prefill_group(tiny, items, pad_id=0)
    for i, p in enumerate(prompts):
        expected_logits, expected_kv = plain_forward(tiny, p)
        torch.testing.assert_close(logits[i], expected_logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(kvs[i], expected_kv, atol=1e-5, rtol=1e-4)
        assert torch.isfinite(kvs[i]).all()


def test_groups_limit_padding() -> None:
    groups = plan_groups([(50, 0), (48, 0), (45, 0), (10, 0), (9, 0), (200, 0)], max_tokens=10_000)
    assert groups == [[5], [0, 1, 2], [3, 4]]
    assert plan_groups([(40, 0)] * 8, max_tokens=100) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert plan_groups([(40, 0), (40, 200), (40, 0)], max_tokens=500) == [[0, 1], [2]]  # long prefixes count
    # long prompts: padding is bounded by 10% of the width (not 25% of the group's tokens), short ones by 32
    assert plan_groups([(606, 0), (560, 0), (500, 0), (480, 0)], max_tokens=10_000) == [[0, 1], [2, 3]]
    assert plan_groups([(100, 0), (70, 0), (60, 0)], max_tokens=10_000) == [[0, 1], [2]]


def test_a_prompt_waits_for_a_shared_uncached_prefix() -> None:
    rubric = list(range(3 * BLOCK))
    prompts = [(rubric + [1, 2], 0), (rubric + [3], 0), (list(range(500, 540)), 0), (rubric + [4], 3 * BLOCK)]
    ready, waiting = split_shared(prompts)
    assert ready == [0, 2, 3] and waiting == [1]  # 3 reuses the rubric already, so it need not wait
