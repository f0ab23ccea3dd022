"""The one interface every stage calls: a batch of requests in, a batch of responses out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .types import LLMRequest, LLMResponse, Message, ModelSpec

Prompt = Sequence[Message] | str  # chat messages, or plain text fed without a chat template
Chain = Iterable[tuple[Any, LLMRequest]]  # (caller's key, request) pairs
Then = Callable[[Any, LLMResponse], Chain]  # an answer in, the requests it unlocks out


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

    def generate_chained(self, first: Chain, then: Then, *, progress: bool = False) -> None:
        """Requests whose follow-ups depend on their answers (an episode's next turn).

        `first` pairs a caller's key with each request; `then(key, response)` is called once per
        response, as soon as it is ready, and returns the (key, request) pairs it unlocks. Returns when
        no request is left. This default plays rounds (one generate() per round), so a round lasts
        as long as its slowest reply; the hf backend overrides it to start each follow-up while the
        rest of the batch still decodes.
        """
        pending = list(first)
        while pending:
            responses = self.generate([r for _, r in pending], progress=progress)
            if len(responses) != len(pending):
                raise RuntimeError(f"{type(self).__name__} returned {len(responses)} of {len(pending)} responses")
            pending = [nxt for (key, _), r in zip(pending, responses, strict=True) for nxt in then(key, r)]

    def choice_logprobs(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[dict[str, float]]:
        """Log-probability of each choice as the next token after each prompt (MMLU letters): a chat
        prompt (messages, rendered with the model's chat template) or plain text (no template)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose next-token log-probabilities")

    def close(self) -> None:  # noqa: B027 -- optional hook, most backends hold nothing to release
        """Release resources (threads, GPU memory, HTTP clients)."""


class WrappedLLM(LLM):
    """A layer in front of another model (the response cache, per-role accounting, a test's probe). It
    is the same model, so it has the inner one's spec and identity (and so its cache keys); everything
    passes through unless a subclass adds to it. `generate_chained` keeps the rounds of LLM's default,
    which go through this layer's `generate`; a layer that can pass chains on whole overrides it."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner

    @property
    def spec(self) -> ModelSpec:  # type: ignore[override]
        return self.inner.spec

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        return self.inner.generate(requests, progress=progress)

    def choice_logprobs(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[dict[str, float]]:
        return self.inner.choice_logprobs(prompts, choices)

    def close(self) -> None:
        self.inner.close()
