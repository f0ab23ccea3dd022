"""Per-row token choice: greedy, reproducible draws independent of the batch, top-p, masks honoured."""

from __future__ import annotations

import torch

from sotopia_pi_lib.llm.sampling import choose_tokens, make_row_sampling, nucleus


def test_greedy_rows_take_the_argmax() -> None:
    logits = torch.tensor([[0.1, 3.0, -1.0], [5.0, 0.0, 0.0]])
    rows = [make_row_sampling(0.0, 1.0, 0, 0), make_row_sampling(0.0, 0.5, 1, 0)]
    assert choose_tokens(logits, rows) == [1, 0]
    assert rows[0].generator is None


def test_a_row_draws_the_same_tokens_alone_or_among_others() -> None:
    torch.manual_seed(0)
    target = torch.randn(1, 1000)
    others = torch.randn(5, 1000)
    alone_rows = [make_row_sampling(1.0, 0.9, seed=7, sample_index=2)]
    batch_rows = [make_row_sampling(1.0, 1.0, seed=s, sample_index=0) for s in range(5)]
    batch_rows.insert(3, make_row_sampling(1.0, 0.9, seed=7, sample_index=2))
    alone = [choose_tokens(target, alone_rows)[0] for _ in range(20)]
    batched = [choose_tokens(torch.cat([others[:3], target, others[3:]]), batch_rows)[3] for _ in range(20)]
    assert alone == batched
    assert len(set(alone)) > 5  # really sampling


def test_sample_index_gives_another_stream() -> None:
    logits = torch.zeros(1, 1000)
    a = [choose_tokens(logits, [r])[0] for r in [make_row_sampling(1.0, 1.0, 3, 0)] for _ in range(10)]
    b = [choose_tokens(logits, [r])[0] for r in [make_row_sampling(1.0, 1.0, 3, 1)] for _ in range(10)]
    assert a != b


def test_draws_follow_the_distribution_and_never_pick_masked_tokens() -> None:
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    logits = probs.log().unsqueeze(0)  # log(0) = -inf: a masked token
    row = make_row_sampling(1.0, 1.0, 11, 0)
    counts = torch.bincount(torch.tensor([choose_tokens(logits, [row])[0] for _ in range(4000)]), minlength=4)
    assert counts[3] == 0
    assert torch.allclose(counts[:3] / 4000, probs[:3], atol=0.03)


def test_temperature_sharpens() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    cold = make_row_sampling(0.1, 1.0, 5, 0)
    picks = [choose_tokens(logits, [cold])[0] for _ in range(200)]
    assert picks.count(0) == 200


def test_nucleus_keeps_the_smallest_set_reaching_top_p() -> None:
    probs = torch.tensor([0.05, 0.5, 0.3, 0.15])
    assert (nucleus(probs, 0.7) > 0).tolist() == [False, True, True, False]
    assert (nucleus(probs, 0.5) > 0).tolist() == [False, True, False, False]
    assert torch.equal(nucleus(probs, 1.0), probs)
    flat = torch.full((5000,), 1 / 5000)  # needs more than the first top-k tries: full sort path
    assert int((nucleus(flat, 0.9) > 0).sum()) == 4500
