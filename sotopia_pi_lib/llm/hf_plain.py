"""The hf backend's plain path: transformers `generate` with xgrammar's own logits processor.

It runs when the engine (engine/) cannot: the installed torch or transformers is not a series the
engine's private hooks were tested with, a hook's self-check failed when the model loaded, or the spec
says `engine: off`. It uses public APIs only, and keeps the backend's promises by the same rules as the
engine: text the JSON grammar forces is written in the tokenizer's canonical tokens, a reply whose
budget runs low lands (grammar.py), and each request samples from its own random stream
(sampling.py). So its replies are schema-valid whenever the engine's are, and in float32 at
temperature 0 they are the engine's tokens. What it gives up is speed: requests run in padded
batches of one schema and budget each (a batch lasts as long as its longest reply), every forced
token costs a forward, nothing is kept between calls, and follow-ups of a chain wait for their batch.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from .grammar import GrammarBook
from .jobs import DecodeStats, Job, OnDone, Outcome, truncation_error
from .sampling import choose_tokens


class PlainRunner:
    """A `Runner` (jobs.py) over model.generate."""

    def __init__(
        self, net: Any, book: Callable[[], GrammarBook], stop_ids: tuple[int, ...], pad_id: int,
        max_batch_size: int, max_batch_tokens: int,
    ) -> None:  # fmt: skip
        self.net, self._book, self.stop_ids, self.pad_id = net, book, stop_ids, pad_id
        self.max_batch_size, self.max_batch_tokens = max_batch_size, max_batch_tokens
        self.stats = DecodeStats()

    def close(self) -> None:
        return None  # nothing is kept between calls

    def run(self, jobs: list[Job], on_done: OnDone | None = None) -> list[Outcome]:
        t0 = time.perf_counter()
        results: list[Outcome | None] = [None] * len(jobs)
        pending = deque(enumerate(jobs))
        while pending:
            batch = self._take(pending)
            started = time.perf_counter()
            outcomes = self._generate([job for _, job in batch], started)
            for (index, _), outcome in zip(batch, outcomes, strict=True):
                results[index] = outcome
                self.stats.requests += 1
                self.stats.decode_tokens += outcome.generated
                for job in (on_done(index, outcome) if on_done is not None else None) or ():
                    pending.append((len(results), job))
                    results.append(None)
        self.stats.wall_s += time.perf_counter() - t0
        return [r for r in results if r is not None]

    def _take(self, pending: deque[tuple[int, Job]]) -> list[tuple[int, Job]]:
        """The first pending job and the others of its kind (schema, budget) that fit with it."""
        kind = _kind(pending[0][1])
        batch, rest = [], deque()
        while pending:
            index, job = pending.popleft()
            width = max([len(j.prompt) for _, j in batch] + [len(job.prompt)])
            fits = len(batch) < self.max_batch_size and (len(batch) + 1) * (width + job.max_tokens) <= self.max_batch_tokens
            if _kind(job) == kind and (fits or not batch):
                batch.append((index, job))
            else:
                rest.append((index, job))
        pending.extend(rest)
        return batch

    @torch.inference_mode()
    def _generate(self, jobs: list[Job], started: float) -> list[Outcome]:
        """One left-padded batch through model.generate (greedy: `_ReplyRules` picks every token)."""
        width = max(len(j.prompt) for j in jobs)
        ids = torch.full((len(jobs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for r, job in enumerate(jobs):
            ids[r, width - len(job.prompt) :] = torch.tensor(job.prompt)
            mask[r, width - len(job.prompt) :] = 1
        processors = LogitsProcessorList()
        grammar = None
        if jobs[0].schema is not None:
            from xgrammar.contrib.hf import LogitsProcessor as GrammarProcessor

            grammar = GrammarProcessor([j.schema.grammar for j in jobs])  # type: ignore[union-attr]
            processors.append(grammar)
        rules = _ReplyRules(jobs, grammar, self._book() if grammar else None, width, set(self.stop_ids))
        processors.append(rules)
        config = GenerationConfig(
            max_new_tokens=jobs[0].max_tokens, do_sample=False, eos_token_id=list(self.stop_ids),
            pad_token_id=self.pad_id, use_cache=True,
        )  # fmt: skip
        t0 = time.perf_counter()
        out = self.net.generate(
            input_ids=ids.to(self.net.device), attention_mask=mask.to(self.net.device),
            generation_config=config, logits_processor=processors,
        )  # fmt: skip
        self.stats.forward_s += time.perf_counter() - t0
        self.stats.steps += out.shape[1] - width
        return [rules.outcome(r, out[r, width:].tolist(), time.perf_counter() - started) for r in range(len(jobs))]


def _kind(job: Job) -> tuple[Any, int]:
    """Jobs of one batch share their schema (or have none) and their budget: generate runs one
    max_new_tokens for the batch, and a row must land on its own budget."""
    return (id(job.schema.grammar) if job.schema is not None else None), job.max_tokens  # compiled once per schema


class _ReplyRules(LogitsProcessor):
    """After xgrammar's processor has masked the scores: the forced token where the grammar forces
    text, landing once a row's budget runs low, then each row's own sampling. It leaves one finite
    score per row, so generate's greedy choice takes it."""

    def __init__(
        self, jobs: list[Job], grammar: Any, book: GrammarBook | None, width: int, stop_ids: set[int]
    ) -> None:
        self.jobs, self.grammar, self.book, self.width, self.stop_ids = jobs, grammar, book, width, stop_ids
        self.closed: dict[int, int] = {}  # row -> the step at which only a stop token may follow
        self.ended: set[int] = set()  # rows that chose a stop token

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.width  # tokens generated so far
        chosen: dict[int, int] = {}
        free: list[int] = []
        for r, job in enumerate(self.jobs):
            if r in self.ended:
                chosen[r] = next(iter(self.stop_ids))  # generate pads finished rows anyway
                continue
            matcher = self.grammar.matchers[r] if self.grammar is not None else None
            if matcher is not None:
                allowed = torch.isfinite(scores[r])
                others = allowed.clone()
                others[list(self.stop_ids)] = False
                if not others.any():  # complete, and nothing may follow
                    self.closed[r] = step
                token = self.book.forced_token(matcher)  # type: ignore[union-attr]
                if token is not None and bool(allowed[token]):
                    chosen[r] = token
                    continue
                if job.max_tokens - step <= job.reserve:  # landing
                    keep = self.book.landing_choices(allowed)  # type: ignore[union-attr]
                    scores[r].masked_fill_(~keep.to(scores.device), float("-inf"))
            free.append(r)
        if free:
            picks = choose_tokens(scores[free], [self.jobs[r].sampling for r in free])
            chosen.update(zip(free, picks, strict=True))
        out = torch.full_like(scores, float("-inf"))
        for r, token in chosen.items():
            out[r, token] = 0.0
            if token in self.stop_ids:
                self.ended.add(r)
        return out

    def outcome(self, row: int, tokens: list[int], latency_s: float) -> Outcome:
        """The row's reply: up to its first stop token. A stop token chosen after the JSON was complete
        is not counted (the engine stops there without spending a step on it)."""
        job = self.jobs[row]
        stop = next((i for i, t in enumerate(tokens) if t in self.stop_ids), None)
        if stop is not None:
            generated = stop if self.closed.get(row) == stop else stop + 1
            return Outcome(tokens[:stop], "stop", generated, 0, latency_s)
        tokens = tokens[: job.max_tokens]
        if job.schema is None:
            return Outcome(tokens, "length", len(tokens), 0, latency_s)
        matcher = self.grammar.matchers[row]
        if tokens and matcher.accept_token(tokens[-1]) and matcher.is_completed():  # the processor
            return Outcome(tokens, "stop", len(tokens), 0, latency_s)  # accepts a token one call late
        return Outcome(tokens, "length", len(tokens), 0, latency_s, truncation_error(job.max_tokens, job.reserve))
