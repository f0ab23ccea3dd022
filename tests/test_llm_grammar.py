"""xgrammar masks and the landing policy, with the embedded model's tokenizer and random logits (no model
forward), so the guarantee "always parses" is tested against the worst possible model."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import torch

from sotopia_pi_lib.errors import ConfigError
from sotopia_pi_lib.llm.grammar import BatchMasker, GrammarBook
from sotopia_pi_lib.sim import ACTION_TYPES, action_schema

ACTION = action_schema(ACTION_TYPES)
SCORE = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string"},
        "score": {"type": "integer", "minimum": -5, "maximum": 5},
    },
    "required": ["reasoning", "score"],
}
RATING = {
    "type": "object",
    "properties": {"goal": SCORE, "secret": SCORE, "notes": {"type": "array", "items": {"type": "string"}}},
    "required": ["goal", "secret", "notes"],
}

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def book(embedded_model_dir: Path) -> GrammarBook:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    return GrammarBook(tokenizer, 49152, (2,))


def test_compiled_schemas_are_cached_by_content(book: GrammarBook) -> None:
    reordered = dict(reversed(ACTION.items()))
    assert book.compile(ACTION) is book.compile(reordered)


def test_invalid_schema_is_a_config_error(book: GrammarBook) -> None:
    with pytest.raises(ConfigError, match="properties/a"):
        book.compile({"type": "object", "properties": {"a": {"type": "strin"}}})


def test_landing_tiers(book: GrammarBook) -> None:
    vocab = [t.decode("utf-8", "replace") for t in book.decoded_vocab]
    tier = {text: next((k for k, t in enumerate(book.tiers) if t[i]), None) for i, text in enumerate(vocab)}
    assert tier['"'] == 0 and tier['"}'] == 0 and tier["}"] == 1 and tier["]"] == 1 and tier[","] == 2
    assert tier[',"'] == 2  # opens another key: not a closer
    assert all(v is None for k, v in tier.items() if "\\" in k)  # an escaped quote closes nothing


def test_reserve_covers_the_minimal_instance(book: GrammarBook) -> None:
    reserve = book.compile(ACTION).reserve
    assert 13 <= reserve <= 40  # the minimal action is 13 tokens
    assert book.compile(RATING).reserve > reserve


def run_random(book: GrammarBook, schema: dict, max_tokens: int, seed: int) -> tuple[str, bool]:
    """Decode as the engine does, with uniformly random logits: forced text in canonical tokens, the rest
    sampled under the mask, landing once no more than the reserve is left."""
    compiled = book.compile(schema)
    matcher = book.matcher(compiled)
    masker = BatchMasker(book, 1)
    g = torch.Generator().manual_seed(seed)
    out: list[int] = []
    while len(out) < max_tokens and not matcher.is_completed():
        logits = torch.rand(1, book.vocab_size, generator=g)
        landing = max_tokens - len(out) <= compiled.reserve
        masker.apply(logits, [(0, matcher, landing)])
        forced = book.forced_token(matcher)
        token = forced if forced is not None else int(logits.argmax())
        assert matcher.accept_token(token)
        out.append(token)
    text = b"".join(book.decoded_vocab[t] for t in out).decode("utf-8", "replace")
    return text, matcher.is_completed()


@pytest.mark.parametrize("schema", [ACTION, RATING], ids=["action", "rating"])
def test_random_logits_always_land_valid_json(book: GrammarBook, schema: dict) -> None:
    budget = book.compile(schema).reserve
    for seed in range(20):
        text, complete = run_random(book, schema, budget, seed)
        assert complete, text
        jsonschema.validate(json.loads(text), schema)


def test_masks_are_applied_only_to_constrained_rows(book: GrammarBook) -> None:
    matcher = book.matcher(book.compile(ACTION))
    masker = BatchMasker(book, 2)
    logits = torch.zeros(2, book.vocab_size)
    masker.apply(logits, [(1, matcher, False)])
    assert torch.isfinite(logits[0]).all()
    allowed = torch.isfinite(logits[1]).nonzero().flatten().tolist()
    assert 0 < len(allowed) < 10
    assert all(book.decoded_vocab[t].startswith(b"{") for t in allowed)


def test_forced_text_comes_in_canonical_tokens(book: GrammarBook) -> None:
    matcher = book.matcher(book.compile(ACTION))
    head = book.forced_prefix(matcher, limit=50)
    assert b"".join(book.decoded_vocab[t] for t in head) == b'{"action_type": "'
    assert head == book.tokenizer.encode('{"action_type": "', add_special_tokens=False)
    assert book.forced_token(matcher) is None  # the enum value is the model's choice
    assert book.forced_prefix(book.matcher(book.compile(ACTION)), limit=2) == head[:2]
