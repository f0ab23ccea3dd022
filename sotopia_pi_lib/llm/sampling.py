"""Next-token choice for a batch of rows, each with its own settings and its own random stream.

Each request owns a torch.Generator seeded from (seed, sample_index) and draws exactly one uniform
number per token, used to invert its row's CDF. So a request samples the same tokens whether it runs
alone or among 31 others, up to float noise in the logits (batched matmuls round differently, about
1e-6 relative; a draw flips only if it lands that close to a CDF step). torch.multinomial would draw
a whole vocabulary of exponentials per row; this costs one cumsum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .json_output import derive_seed

NUCLEUS_STEPS = (64, 1024)  # try top-k candidates first; fall back to a full sort only if needed


@dataclass
class RowSampling:
    temperature: float
    top_p: float
    generator: torch.Generator | None  # None for greedy rows


def make_row_sampling(temperature: float, top_p: float, seed: int, sample_index: int) -> RowSampling:
    if temperature == 0.0:
        return RowSampling(0.0, 1.0, None)
    generator = torch.Generator(device="cpu").manual_seed(derive_seed(seed, sample_index))
    return RowSampling(temperature, top_p, generator)


def choose_tokens(logits: torch.Tensor, rows: list[RowSampling]) -> list[int]:
    """One token per row of `logits` ([rows, vocab], float32, masked entries -inf)."""
    chosen = logits.argmax(dim=-1).tolist()
    sampled = [i for i, r in enumerate(rows) if r.generator is not None]
    if not sampled:
        return chosen
    temps = torch.tensor(
        [rows[i].temperature for i in sampled], dtype=logits.dtype, device=logits.device
    ).unsqueeze(1)
    probs = torch.softmax(logits[sampled] / temps, dim=-1)
    for j, i in enumerate(sampled):
        if rows[i].top_p < 1.0:
            probs[j] = nucleus(probs[j], rows[i].top_p)
    cdf = probs.cumsum(dim=-1)
    draws = torch.tensor(  # drawn on the CPU (each row's generator lives there), used on the logits' device
        [[torch.rand(1, generator=rows[i].generator).item()] for i in sampled], dtype=cdf.dtype, device=cdf.device
    )
    picked = torch.searchsorted(cdf, draws * cdf[:, -1:], right=True).clamp_(max=logits.shape[-1] - 1)
    for j, i in enumerate(sampled):
        token = int(picked[j])
        chosen[i] = token if probs[j, token] > 0 else int(probs[j].argmax())
    return chosen


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """probs restricted to the smallest set of top tokens whose mass reaches top_p (not renormalized:
    the caller scales its draw by the remaining total)."""
    for k in (*NUCLEUS_STEPS, probs.shape[-1]):
        k = min(k, probs.shape[-1])
        values, indices = probs.topk(k)
        cumulative = values.cumsum(0)
        if cumulative[-1] >= top_p or k == probs.shape[-1]:
            keep = max(1, int((cumulative - values < top_p).sum()))
            out = torch.zeros_like(probs)
            out[indices[:keep]] = values[:keep]
            return out
    raise AssertionError("unreachable")
