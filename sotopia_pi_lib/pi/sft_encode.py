"""Examples -> token ids and labels, with the loss on the completion (the JSON action) only.

Tokenising here rather than inside TRL gives two guarantees TRL's own preparation does not: an
over-long example never loses completion tokens (TRL only truncates from the end), and the labels are
built once and can be inspected in a test. TRL receives the tokenised dataset and only pads it.
The prompt/completion boundary is found the way TRL finds it: the chat template renders the prompt
with its generation header, then prompt + completion, and the completion starts where they diverge.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel
from tqdm.auto import tqdm
from trl.data_utils import common_prefix_length

from ..errors import DataError
from ..llm.chat_template import encode_chat
from .sft_data import SFTExample

log = logging.getLogger(__name__)
IGNORE_INDEX = -100
Outcome = Literal["kept", "truncated", "dropped"]


class EncodeStats(BaseModel):
    """What encoding did to a training file; recorded in the adapter's provenance."""

    examples: int = 0
    kept: int = 0
    truncated: int = 0
    dropped_overlong: int = 0
    tokens: int = 0
    completion_tokens: int = 0


def _ids(tokenizer, example: SFTExample) -> tuple[list[int], list[int]]:
    """Token ids of the prompt alone (as the model sees it at inference) and of prompt + completion."""
    if isinstance(example.prompt, list):
        # rendered as the backends render prompts (a template that refuses a system message gets it
        # merged into the first user turn), so the trained model sees at test time what it learnt on
        prompt = [m.model_dump() for m in example.prompt]
        full = prompt + [m.model_dump() for m in example.completion]
        return encode_chat(tokenizer, prompt), encode_chat(tokenizer, full, add_generation_prompt=False)
    completion = example.completion_text
    if tokenizer.eos_token and not completion.endswith(tokenizer.eos_token):
        completion += tokenizer.eos_token  # the model must learn to stop after the action
    return tokenizer(example.prompt)["input_ids"], tokenizer(example.prompt + completion)["input_ids"]


def encode_example(
    example: SFTExample, tokenizer, max_length: int, overlong: Literal["drop", "truncate_left"] = "drop"
) -> tuple[dict[str, list[int]] | None, Outcome]:
    """{"input_ids", "labels"} with IGNORE_INDEX over the prompt, or None when it cannot fit max_length.

    An over-long example is dropped, or (truncate_left) loses its oldest prompt tokens; the completion is
    never cut, so an example whose completion alone does not fit is always dropped.
    """
    prompt_ids, ids = _ids(tokenizer, example)
    start = common_prefix_length(prompt_ids, ids)
    outcome: Outcome = "kept"
    excess = len(ids) - max_length
    if excess > 0:
        if overlong == "drop" or excess >= start:
            return None, "dropped"
        ids, start, outcome = ids[excess:], start - excess, "truncated"
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * start + ids[start:]}, outcome


def encode_examples(
    examples: Sequence[SFTExample],
    tokenizer,
    max_length: int,
    overlong: Literal["drop", "truncate_left"],
    source: str = "<examples>",
) -> tuple[list[dict[str, list[int]]], EncodeStats]:
    """Encode every example; DataError (naming `source`) if none fits max_length."""
    rows: list[dict[str, list[int]]] = []
    stats = EncodeStats(examples=len(examples))
    for ex in tqdm(examples, desc="tokenizing", unit="ex", leave=False):
        row, outcome = encode_example(ex, tokenizer, max_length, overlong)
        if row is None:
            stats.dropped_overlong += 1
            continue
        rows.append(row)
        stats.truncated += outcome == "truncated"
        stats.tokens += len(row["input_ids"])
        stats.completion_tokens += sum(t != IGNORE_INDEX for t in row["labels"])
    stats.kept = len(rows)
    if not rows:
        raise DataError(
            f"{source}: all {len(examples)} examples are longer than max_length={max_length} "
            f"tokens (overlong={overlong!r}); raise train.max_length or shorten the prompts"
        )
    if stats.dropped_overlong or stats.truncated:
        log.warning(
            "%s: %d of %d examples over max_length=%d: %d dropped, %d prompts cut from the left",
            source,
            stats.dropped_overlong + stats.truncated,
            stats.examples,
            max_length,
            stats.dropped_overlong,
            stats.truncated,
        )
    return rows, stats
