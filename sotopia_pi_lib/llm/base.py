"""The one interface every stage calls: a batch of requests in, a batch of responses out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from .types import LLMRequest, LLMResponse, Message, ModelSpec


class LLM(ABC):
    """A model behind one of the backends.

    Backends batch internally (hf: padded batches sized to memory; openai: bounded concurrency;
    vllm: its own scheduler), so callers always hand over everything they have at once.
    A request that fails for good yields a response with `error` set; it never raises for the batch.
    """

    spec: ModelSpec

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Everything about the model that determines its outputs (part of every cache key):
        backend, model id or weights hash, the adapter's content hash, output-relevant options."""

    @abstractmethod
    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        """Run all requests; responses come back in request order."""

    def choice_logprobs(
        self, prompts: Sequence[Sequence[Message]], choices: Sequence[str]
    ) -> list[dict[str, float]]:
        """Log-probability of each choice as the next token after each chat prompt (MMLU letters)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose next-token log-probabilities")

    def close(self) -> None:  # noqa: B027 -- optional hook, most backends hold nothing to release
        """Release resources (threads, GPU memory, HTTP clients)."""
