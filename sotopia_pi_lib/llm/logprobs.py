"""Next-token log-probabilities over fixed choices (MMLU's letters), batched with left padding."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError


def choice_token_ids(tokenizer: Any, choices: list[str] | tuple[str, ...] | Any) -> list[int]:
    """The first token of each choice, encoded as given; two choices sharing it would get the same
    score, so that is an error."""
    ids = []
    for choice in choices:
        encoded = tokenizer.encode(choice, add_special_tokens=False)
        if not encoded:
            raise ConfigError(f"choice {choice!r} encodes to no token")
        ids.append(encoded[0])
    if len(set(ids)) != len(ids):
        raise ConfigError(f"choices {list(choices)!r} share a first token; their log-probabilities would tie")
    return ids


@torch.inference_mode()
def next_token_logprobs(
    net: Any, prompts: list[list[int]], token_ids: list[int], pad_id: int, max_rows: int, max_tokens: int
) -> list[list[float]]:
    """log p(token | prompt) for each prompt and token. Prompts are sorted by length and cut into
    left-padded batches of at most max_rows rows and max_tokens padded tokens."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[float]] = [[] for _ in prompts]
    batch: list[int] = []
    for i in [*order, None]:
        longest = len(prompts[i]) if i is not None else 0
        if batch and (i is None or len(batch) >= max_rows or (len(batch) + 1) * longest > max_tokens):
            rows = _forward(net, [prompts[j] for j in batch], token_ids, pad_id)
            for j, row in zip(batch, rows, strict=True):
                out[j] = row
            batch = []
        if i is not None:
            batch.append(i)
    return out


def _forward(net: Any, prompts: list[list[int]], token_ids: list[int], pad_id: int) -> list[list[float]]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p) :] = torch.tensor(p)
        mask[r, width - len(p) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    device = net.device
    logits = (
        net(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            logits_to_keep=1,
        )
        .logits[:, -1]
        .float()
    )
    return torch.log_softmax(logits, dim=-1)[:, token_ids].tolist()
