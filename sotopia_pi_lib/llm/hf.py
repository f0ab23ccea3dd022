"""The `hf` backend: a local transformers model (CPU or CUDA), optional LoRA adapter, optional 4-bit.

Options (spec.options, checked at construction; see hf_load.HFOptions): device, dtype, load_in_4bit,
max_batch_size, max_batch_tokens, kv_cache_bytes, jump_forward, pack_weights, engine. Weights load on
the first generate/choice_logprobs call, never in the constructor or identity(): a fully cached
re-run must not load a model.

An HFModel is one variant: the base model, or the base with one LoRA adapter. Variants built through
an EnginePool (pool.py) share one HFBase (hf_base.py): one copy of the weights with every adapter
loaded beside each other (peft, unmerged), one decoding path, one KV store kept apart per adapter.
Built alone, a variant has a base of its own.

Generation runs the engine (engine/: continuous batching, grouped prefill, KV kept across calls and
found by session or shared prefix, xgrammar-constrained JSON; engine/decode.py says why it is not
model.generate). The engine relies on private transformers and torch hooks (engine/hooks.py); when the
installed versions are not the tested ones or a hook's self-check fails at load, the backend logs one
warning and runs its plain path instead (hf_plain.py: model.generate with xgrammar's logits processor),
which keeps every promise below and is slower. Option `engine` (auto | on | off) chooses.
- Reproducible per request: greedy or sampled, a reply depends on the request alone (its own random
  stream from seed and sample_index), not on its batch-mates or on KV reuse, up to float rounding
  (batched matmuls and reused KV round differently, ~1e-6 relative; a token flips only at a near-tie).
- A JSON reply always parses and validates unless max_tokens is below what the schema minimally needs
  (grammar.py: landing); then finish_reason is "length" and `error` says so.
- Latency of a response is the time from the start of its generate() call until it finished (what a
  caller waiting on the batch experiences); completion_tokens counts a final end-of-sequence token.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .base import LLM, Chain, Prompt, Then
from .fingerprint import adapter_hash, hub_weights_hash, is_local_model, tokenizer_hash, weights_hash
from .hf_base import HFBase
from .hf_load import Loaded, pick_device, pick_dtype
from .jobs import DecodeStats
from .types import LLMRequest, LLMResponse, Message, ModelSpec


class HFModel(LLM):
    Base = HFBase  # what an EnginePool shares among the variants of one base model

    def __init__(self, spec: ModelSpec, base: HFBase | None = None) -> None:
        if spec.backend != "hf":
            raise ConfigError(f"HFModel needs an hf model spec, got backend {spec.backend!r}")
        self.spec = spec
        self.base = base if base is not None else HFBase(spec)
        self.options = self.base.options
        self.adapter = self.base.register(spec.adapter)  # its peft name; None for the base
        self.base.acquire(self)
        self._identity: dict[str, Any] | None = None

    @property
    def model_path(self) -> str:
        return self.base.model_path

    @property
    def loaded(self) -> bool:
        return self.base.loaded

    @property
    def _loaded(self) -> Loaded | None:  # tests look at the loaded module
        return self.base._loaded

    @property
    def path(self) -> str | None:
        """"engine" or "plain" (hf_plain.py) once loaded."""
        return self.base.path

    @property
    def plain_reason(self) -> str | None:
        return self.base.plain_reason

    @property
    def stats(self) -> DecodeStats:
        """Prefill tokens computed vs reused, decode tokens, time in forward/grammar/sampling (of the
        base: every variant sharing it counts)."""
        return self.base.stats

    def reset_stats(self) -> None:
        self.base.reset_stats()

    def identity(self) -> dict[str, Any]:
        """Content hashes, not paths, name the weights, so a moved checkout keeps its cache and a
        retrained adapter saved over the old one does not replay old answers."""
        if self._identity is None:
            path = self.model_path
            if is_local_model(path):
                weights, tokenizer = weights_hash(Path(path)), tokenizer_hash(Path(path))
            else:
                weights, tokenizer = hub_weights_hash(path)
            device = pick_device(self.options)
            self._identity = {
                "backend": "hf", "model": self.spec.model, "weights_sha256": weights, "tokenizer": tokenizer,
                "adapter_sha256": adapter_hash(Path(self.spec.adapter)) if self.spec.adapter else None,
                "dtype": str(pick_dtype(self.options, device)).removeprefix("torch."),
                "load_in_4bit": self.options.load_in_4bit,
            }  # fmt: skip
        return dict(self._identity)

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        return self.base.prompt_ids(messages)

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        self.base.acquire(self)
        return self.base.generate(requests, self.adapter, self.spec.label, progress)

    def generate_chained(self, first: Chain, then: Then, *, progress: bool = False) -> None:
        self.base.acquire(self)
        self.base.generate_chained(first, then, self.adapter, self.spec.label)

    def choice_logprobs(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[dict[str, float]]:
        """Log-probability of each choice's first token as the next token after each prompt.

        After a chat prompt the reply starts right after the template's "<|im_start|>assistant\\n", at the
        start of a line, where tokenizers write "A" without a leading space; so each choice is encoded as
        given (pass " A" to score the spaced variant, as after a plain-text prompt ending "Answer:").
        A plain-text prompt is tokenized as the tokenizer does a document (its BOS where it adds one).
        Choices must differ in their first token.
        """
        self.base.acquire(self)
        return self.base.choice_logprobs(prompts, choices, self.adapter)

    def close(self) -> None:
        """This variant is done: the base drops its weights when no other variant uses them."""
        self.base.release(self)
