"""The batch KV buffer, checked against transformers' own DynamicCache on a tiny random Llama (no
files needed, so this runs in a second)."""

from __future__ import annotations

import pytest
import torch
from tiny_llama import nan_buffers, plain_forward, tiny_llama  # tests/ is on sys.path (no package)
from transformers import LlamaForCausalLM

from sotopia_pi_lib.llm.engine.batch_kv import BatchKV


@pytest.fixture(scope="module")
def tiny() -> LlamaForCausalLM:
    return tiny_llama()


@pytest.fixture()
def nan_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    nan_buffers(monkeypatch)


@torch.inference_mode()
def test_batch_buffer_decodes_like_each_sequence_alone(tiny: LlamaForCausalLM, nan_memory: None) -> None:
    """Rows of different lengths, left-padded in one buffer, a row removed and a longer one added
    mid-way: every step's logits equal the same sequence decoded alone (up to float rounding)."""
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (5, 17, 9, 30)]
    steps = [torch.randint(0, 97, (6,), generator=g).tolist() for _ in prompts]
    batch = BatchKV(2, 2, 8, torch.float32, torch.device("cpu"), capacity=2)
    rows = []
    for i in range(3):
        batch.add(plain_forward(tiny, prompts[i])[1])
        rows.append(i)
    for t in range(6):
        if t == 2:  # row of sequence 1 leaves, a longer sequence joins (forces a left realloc)
            k = rows.index(1)
            moved = batch.remove(k)
            if moved is not None:
                rows[k] = rows[moved]
            rows.pop()
            _, kv = plain_forward(tiny, prompts[3] + steps[3][:2])
            batch.add(kv)
            rows.append(3)
        batch.reserve(1)
        tokens = torch.tensor([[steps[r][t]] for r in rows])
        out = tiny(
            input_ids=tokens, position_ids=batch.positions(), attention_mask=batch.step_mask(),
            cache=batch.as_cache(), use_cache=True,
        )  # fmt: skip
        batch.advance()
        for j, r in enumerate(rows):
            expected, _ = plain_forward(tiny, prompts[r] + steps[r][: t + 1])
            torch.testing.assert_close(out.logits[j, -1], expected, atol=1e-5, rtol=1e-4)
    for j, r in enumerate(rows):
        _, kv = plain_forward(tiny, prompts[r] + steps[r])
        torch.testing.assert_close(batch.row_kv(j), kv, atol=1e-5, rtol=1e-4)
    assert batch.reallocations >= 2
    assert torch.isfinite(batch.buf[:, :, : batch.rows, :, : batch.end]).all()


@torch.inference_mode()
def test_steps_of_several_tokens_per_row_match_each_sequence_alone(tiny: LlamaForCausalLM, nan_memory: None) -> None:
    """Forced text fed at once: rows feed 1-4 tokens in the same step (shorter ones padded within
    the step); the logits of each row's last token and the kept KV equal the sequence alone."""
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (7, 12, 3)]
    plan = [[1, 3, 2], [4, 1, 1], [2, 2, 4], [1, 1, 1]]  # tokens per row in each step
    fed = [list(p) for p in prompts]
    batch = BatchKV(2, 2, 8, torch.float32, torch.device("cpu"), capacity=3)
    for p in prompts:
        batch.add(plain_forward(tiny, p)[1])
    for counts in plan:
        new = [torch.randint(0, 97, (k,), generator=g).tolist() for k in counts]
        batch.step_inputs(counts)
        w = batch.width
        ids = torch.tensor([[0] * (w - len(n)) + n for n in new])
        uneven = counts if len(set(counts)) > 1 else None
        out = tiny(input_ids=ids, position_ids=batch.positions(uneven), attention_mask=batch.step_mask(uneven),
                   cache=batch.as_cache(), use_cache=True)  # fmt: skip
        batch.advance(uneven)
        for r, n in enumerate(new):
            fed[r] += n
            expected, _ = plain_forward(tiny, fed[r])
            torch.testing.assert_close(out.logits[r, -1], expected, atol=1e-5, rtol=1e-4)
    for r in range(3):
        _, kv = plain_forward(tiny, fed[r])
        torch.testing.assert_close(batch.row_kv(r), kv, atol=1e-5, rtol=1e-4)
    assert batch.remove(0) == 2  # a row with holes moves intact
    _, kv = plain_forward(tiny, fed[2])
    torch.testing.assert_close(batch.row_kv(0), kv, atol=1e-5, rtol=1e-4)
