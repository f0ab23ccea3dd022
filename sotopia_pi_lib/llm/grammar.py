"""JSON-schema-constrained decoding with xgrammar: compiled grammars, token masks, a soft landing.

Every step, each constrained sequence's matcher fills one row of a token bitmask and the disallowed
logits become -inf, so the text is always a prefix of a valid instance. What the grammar cannot do is
finish in time: a 135M model may still be inside a long string when max_tokens runs out. So each schema
gets a *reserve*: the number of tokens the shortest way to close the JSON took in a model-free dry
run. Once a sequence has no more than that left, it is *landing*: among the allowed tokens it may only
pick ones that close something (a quote, else `}` or `]`, else a comma), so strings end and the object
closes. Truncated JSON then needs a budget below the schema's minimum, and is reported as an error.

Text the grammar forces (keys, punctuation, the rest of an enum value) is written in the tokenizer's
own tokenization instead of being sampled: a 135M model under a mask likes to spell keys letter by
letter ('a', 'ct', 'i', 'on', ...: 31 tokens for a 17-token action), which costs decode steps, puts
the model off its training distribution and breaks token-level prefix reuse when the reply comes back
in the next prompt. The forced text at the very start is even prefilled with the prompt (jump-forward).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
import xgrammar as xg

from ..errors import ConfigError
from .schema import canonical_schema, check_schema

DRY_RUN_STEPS = 512
_SHIFTS = torch.arange(32, dtype=torch.int32)


@dataclass(frozen=True)
class CompiledSchema:
    schema: dict[str, Any]
    grammar: xg.CompiledGrammar
    reserve: int  # tokens kept for closing the JSON (see module docstring)


class GrammarBook:
    """One tokenizer's grammar compiler, its compiled schemas (by canonical JSON) and token classes."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: tuple[int, ...]) -> None:
        self.info = xg.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_ids)
        )
        self.compiler = xg.GrammarCompiler(self.info, max_threads=1)
        self.tokenizer, self.vocab_size = tokenizer, vocab_size
        self.decoded_vocab: list[bytes] = self.info.decoded_vocab  # the property rebuilds the list per call
        self.tiers = token_classes(self.decoded_vocab, vocab_size)
        self._compiled: dict[str, CompiledSchema] = {}
        self._forced: dict[str, int | None] = {}

    def compile(self, schema: dict[str, Any]) -> CompiledSchema:
        key = canonical_schema(schema)
        if key not in self._compiled:
            check_schema(schema)
            try:
                grammar = self.compiler.compile_json_schema(key, any_whitespace=False, strict_mode=True)
            except Exception as e:  # noqa: BLE001 -- xgrammar rejects a construct the checker let through
                raise ConfigError(f"json_schema cannot be compiled for constrained decoding: {e}") from e
            self._compiled[key] = CompiledSchema(json.loads(key), grammar, self.dry_run_reserve(grammar))
        return self._compiled[key]

    def matcher(self, compiled: CompiledSchema) -> xg.GrammarMatcher:
        return xg.GrammarMatcher(compiled.grammar)

    def dry_run_reserve(self, grammar: xg.CompiledGrammar) -> int:
        """1.5 x the steps that landing, picking the longest allowed token, takes to finish from the start,
        plus 4: the model tokenizes forced text about as finely (13 tokens for the minimal SOTOPIA action,
        15 dry-run steps), and the margin covers a landing that starts mid-way through a key."""
        matcher = xg.GrammarMatcher(grammar)
        mask = xg.allocate_token_bitmask(1, self.vocab_size)
        lengths = torch.tensor(
            [len(t) for t in self.info.decoded_vocab[: self.vocab_size]], dtype=torch.float32
        )
        steps = 0
        while steps < DRY_RUN_STEPS and not matcher.is_completed():
            matcher.fill_next_token_bitmask(mask, 0)
            allowed = self.landing_choices(unpack(mask[0], self.vocab_size))
            allowed[list(self.info.stop_token_ids)] = False
            if not allowed.any():
                break
            token = int(torch.where(allowed, lengths, -1.0).argmax())
            if not matcher.accept_token(token):
                break
            steps += 1
        return (3 * steps + 1) // 2 + 4

    def forced_token(self, matcher: xg.GrammarMatcher) -> int | None:
        """The first token of the canonical tokenization of the text the grammar forces next, if any."""
        text = matcher.find_jump_forward_string()
        if not text:
            return None
        if text not in self._forced:
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            ok = bool(ids) and text.encode("utf-8").startswith(self.decoded_vocab[ids[0]])
            self._forced[text] = ids[0] if ok else None
        return self._forced[text]

    def forced_prefix(self, matcher: xg.GrammarMatcher, limit: int) -> list[int]:
        """Accept and return up to `limit` tokens of forced text (the reply's opening, prefilled)."""
        out: list[int] = []
        while len(out) < limit and (token := self.forced_token(matcher)) is not None:
            if not matcher.accept_token(token):
                break
            out.append(token)
        return out

    def landing_choices(self, allowed: torch.Tensor) -> torch.Tensor:
        """The allowed tokens a landing sequence may take: those of the first non-empty tier, else all."""
        for tier in self.tiers:
            picked = allowed & tier
            if picked.any():
                return picked
        return allowed.clone()


def token_classes(decoded_vocab: list[bytes], vocab_size: int) -> tuple[torch.Tensor, ...]:
    """Landing tiers: tokens with a quote (they end a string; inside one, `}` is just text), then
    tokens with `}` or `]`, then tokens with a comma. A quote with a comma (`,"`) would open another
    key rather than close the object, and a backslash escapes a quote, so both stay out of tier one."""
    tiers = [torch.zeros(vocab_size, dtype=torch.bool) for _ in range(3)]
    for i, text in enumerate(decoded_vocab[:vocab_size]):
        if b"\\" in text:
            continue
        if b'"' in text and b"," not in text:
            tiers[0][i] = True
        elif (b"}" in text or b"]" in text) and b'"' not in text:
            tiers[1][i] = True
        elif b"," in text:
            tiers[2][i] = True
    return tuple(tiers)


def unpack(row: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """One bitmask row (int32 words, bit j of word w = token 32w+j) as a bool vector."""
    return ((row.unsqueeze(-1) >> _SHIFTS) & 1).bool().reshape(-1)[:vocab_size]


class BatchMasker:
    """Applies the grammar of every constrained row of a batch to its logits, in place."""

    def __init__(self, book: GrammarBook, max_rows: int) -> None:
        self.book = book
        self.bitmask = xg.allocate_token_bitmask(max_rows, book.vocab_size)
        self.scratch = xg.allocate_token_bitmask(1, book.vocab_size)

    def apply(self, logits: torch.Tensor, rows: list[tuple[int, xg.GrammarMatcher, bool]]) -> None:
        """rows: (row index, matcher, landing?) for each constrained row."""
        if not rows:
            return
        if logits.shape[0] > self.bitmask.shape[0]:
            self.bitmask = xg.allocate_token_bitmask(logits.shape[0], self.book.vocab_size)
        for i, matcher, _ in rows:
            matcher.fill_next_token_bitmask(self.bitmask, i)
        vocab = self.book.vocab_size
        # matchers fill a CPU bitmask; on a GPU the logits stay there and the mask goes to them
        bitmask = self.bitmask[: logits.shape[0]].to(logits.device, non_blocking=True)
        xg.apply_token_bitmask_inplace(logits, bitmask, vocab_size=vocab, indices=[r[0] for r in rows])
        for i, _, landing in rows:
            if landing:
                keep = self.book.landing_choices(unpack(self.bitmask[i], vocab)).to(logits.device)
                logits[i, :vocab].masked_fill_(~keep, float("-inf"))
