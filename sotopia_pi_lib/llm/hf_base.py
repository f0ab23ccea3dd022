"""One loaded base model of the hf backend, shared by every variant (the base, the base + an adapter).

A stage that evaluates five policy variants on one base model holds one copy of the weights, one
decoding path and one KV store here (keys and values kept apart per adapter), not five merged
copies. The LoRA adapters of all its variants are loaded side by side with peft and switched per
call (`Loaded.active`). Weights load on the first call that needs them, with every adapter
registered by then; an adapter registered after that reloads the model with it at the next call (the
engine's packed weights cannot take a new adapter; a stage registers its variants before it runs
them, so this is rare). When the last variant using the base is released, the weights are dropped.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from ..errors import BackendError
from .base import Chain, Prompt, Then
from .chat_template import encode_chat
from .engine import EngineSettings, EngineUnavailable
from .hf_load import Loaded, context_limit, load, parse_options, resolve_model
from .jobs import DecodeStats, Job, Outcome, Runner
from .json_output import check_schemas
from .schema import parse_json_output
from .types import LLMRequest, LLMResponse, Message, ModelSpec

LOGPROB_ROWS, LOGPROB_TOKENS = 8, 4096
log = logging.getLogger(__name__)
_warned: set[str] = set()  # each reason for the plain path is logged once per process


class _CallerError(Exception):
    """Carries an exception raised by generate_chained's callback out of the decode loop unchanged."""


class HFBase:
    """The weights, tokenizer, decoding path (engine or plain) and KV store of one base model."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec.model_copy(update={"adapter": None})
        self.options = parse_options(spec)
        self._lock = threading.RLock()
        self._model_path: str | None = None
        self._adapters: dict[str, str] = {}  # adapter folder -> its peft name
        self._users: set[int] = set()
        self._loaded: Loaded | None = None
        self._runner: Runner | None = None
        self._book: Any = None
        self.path: str | None = None  # "engine" or "plain" once loaded
        self.plain_reason: str | None = None  # why the plain path runs
        self.loads = 0  # how many times the weights were loaded

    @property
    def model_path(self) -> str:
        if self._model_path is None:
            self._model_path = resolve_model(self.spec.model)
        return self._model_path

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def stats(self) -> DecodeStats:
        return self._runner.stats if self._runner is not None else DecodeStats()

    def reset_stats(self) -> None:
        if self._runner is not None:
            self._runner.stats = DecodeStats()

    # -- variants -------------------------------------------------------------------------------------

    def register(self, adapter: str | None) -> str | None:
        """The peft name of an adapter folder (None for the base), registering it on first sight."""
        if adapter is None:
            return None
        with self._lock:
            if adapter not in self._adapters:
                self._adapters[adapter] = f"adapter{len(self._adapters) + 1}"  # peft names: no dots
                if self._loaded is not None:
                    log.info("%s: adapter %s registered after loading; reloading with it", self.spec.label, adapter)
                    self.unload()
            return self._adapters[adapter]

    def acquire(self, user: object) -> None:
        self._users.add(id(user))

    def release(self, user: object) -> None:
        """A variant is done; the weights go when no variant is left."""
        with self._lock:
            self._users.discard(id(user))
            if not self._users:
                self.unload()

    def unload(self) -> None:
        with self._lock:
            if self._runner is not None:
                self._runner.close()
            self._runner = self._loaded = self._book = None
            gc.collect()  # the KV store and weights are large; free them now, not at some later collection

    # -- loading --------------------------------------------------------------------------------------

    def _load(self) -> tuple[Loaded, Runner]:
        if self._loaded is None or self._runner is None:
            adapters = {name: folder for folder, name in self._adapters.items()}
            self._loaded = load(self.model_path, adapters, self.options)
            self._runner = self._start_runner(adapters)
            self.loads += 1
        return self._loaded, self._runner

    def _start_runner(self, adapters: dict[str, str]) -> Runner:
        """The engine, unless option engine is off or it refuses (engine/hooks.py); else the plain path."""
        from . import engine

        loaded, o = self._loaded, self.options
        assert loaded is not None
        pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else loaded.stop_ids[0]
        if o.engine == "off":
            reason = "hf option engine: off"
        else:
            settings = EngineSettings(
                stop_ids=loaded.stop_ids, pad_id=pad_id, max_batch_size=o.max_batch_size,
                max_batch_tokens=o.max_batch_tokens, kv_cache_bytes=o.kv_cache_bytes, jump_forward=o.jump_forward,
                pack_weights=o.pack_weights and not o.load_in_4bit, ignore_versions=o.engine == "on",
            )  # fmt: skip
            try:
                with loaded.active(None):  # the self-check runs the base weights
                    runner = engine.start(loaded.net, self.grammar_book, settings)
                self.path, self.plain_reason = "engine", None
                return runner
            except EngineUnavailable as e:
                if o.engine == "on":
                    raise BackendError(f"{self.spec.label}: hf option engine: on, but {e}") from e
                reason = str(e)
                if e.modified:  # the engine had already changed the model: load it afresh
                    self._loaded = loaded = load(self.model_path, adapters, o)
            if reason not in _warned:  # once per reason and process, not per model of a stage
                _warned.add(reason)
                log.warning("%s: the hf backend runs its plain transformers path (slower): %s", self.spec.label, reason)
        from .hf_plain import PlainRunner

        self.path, self.plain_reason = "plain", reason
        return PlainRunner(loaded.net, self.grammar_book, loaded.stop_ids, pad_id, o.max_batch_size, o.max_batch_tokens)

    def grammar_book(self) -> Any:
        if self._book is None:
            from .grammar import GrammarBook

            loaded = self._loaded or self._load()[0]
            self._book = GrammarBook(loaded.tokenizer, loaded.vocab_size, loaded.stop_ids)
        return self._book

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        try:
            return encode_chat(self._load()[0].tokenizer, messages)
        except BackendError as e:
            raise BackendError(f"{self.spec.label}: {e}") from e

    # -- generation -----------------------------------------------------------------------------------

    def generate(
        self, requests: Sequence[LLMRequest], adapter: str | None, label: str, progress: bool = False
    ) -> list[LLMResponse]:
        requests = list(requests)
        check_schemas(requests)
        if not requests:
            return []
        with self._lock:
            loaded, runner = self._load()
            compiled = [
                self.grammar_book().compile(r.json_schema) if r.json_schema else None for r in requests
            ]
            jobs, errors = self._jobs(requests, compiled, loaded, adapter)
            runnable = [i for i, job in enumerate(jobs) if job is not None]
            with loaded.active(adapter):
                outcomes = self._run(runner, [jobs[i] for i in runnable], label, progress)  # type: ignore[misc]
        by_index = dict(zip(runnable, outcomes, strict=True))
        return [
            errors[i] if i in errors else self._response(r, jobs[i], by_index[i], loaded)  # type: ignore[arg-type]
            for i, r in enumerate(requests)
        ]

    def generate_chained(self, first: Chain, then: Then, adapter: str | None, label: str) -> None:
        """One decode run for the whole chain: a follow-up is prefilled and joins the running batch
        as soon as the answer it depends on is out, so episodes never wait for the slowest reply of a
        round (16 episodes, 6 turns: 506 decode steps in rounds, see bench/sim_throughput.py). The plain
        path plays rounds of its own batches."""
        with self._lock:
            loaded, runner = self._load()
            meta: list[tuple[Any, LLMRequest, Job]] = []  # by engine job index

            def jobs_for(pairs: Chain) -> list[Job]:
                out, queue = [], deque(pairs)
                while queue:
                    key, request = queue.popleft()
                    check_schemas([request])  # before any generation for `first`
                    schema = self.grammar_book().compile(request.json_schema) if request.json_schema else None
                    jobs, errors = self._jobs([request], [schema], loaded, adapter)
                    if errors:  # e.g. a prompt past the context: answered at once, may unlock more
                        queue.extend(then(key, errors[0]))
                        continue
                    meta.append((key, request, jobs[0]))  # type: ignore[arg-type]
                    out.append(jobs[0])
                return out  # type: ignore[return-value]

            def done(index: int, outcome: Outcome) -> list[Job]:
                key, request, job = meta[index]
                try:
                    return jobs_for(then(key, self._response(request, job, outcome, loaded)))
                except Exception as e:  # the caller's own error (a full disk, say): not the model's
                    raise _CallerError() from e

            try:
                with loaded.active(adapter):
                    runner.run(jobs_for(first), on_done=done)
            except _CallerError as e:
                raise e.__cause__ from None  # type: ignore[misc]
            except (RuntimeError, MemoryError) as e:
                raise BackendError(f"{label}: generation failed: {type(e).__name__}: {e}") from e

    def _run(self, engine: Runner, jobs: list[Job], label: str, progress: bool) -> list[Outcome]:
        bar = tqdm(total=len(jobs), desc=f"{label} generate", disable=not progress, unit="req")
        before, t0 = engine.stats.model_copy(), time.perf_counter()

        def done(*_: Any) -> None:
            bar.update(1)
            bar.set_postfix_str(
                f"{(engine.stats.decode_tokens - before.decode_tokens) / (time.perf_counter() - t0):.1f} tok/s"
            )

        try:
            outcomes = engine.run(jobs, on_done=done)
        except (RuntimeError, MemoryError) as e:  # out of memory, a device error: say which model
            raise BackendError(f"{label}: generation failed: {type(e).__name__}: {e}") from e
        finally:
            bar.close()
        if progress:
            s, seconds = engine.stats, time.perf_counter() - t0
            tokens = s.decode_tokens - before.decode_tokens
            tqdm.write(
                f"{label}: {len(jobs)} requests, {tokens} tokens in {seconds:.1f} s "
                f"({tokens / max(seconds, 1e-9):.1f} tok/s); prompt tokens computed "
                f"{s.prefill_tokens_computed - before.prefill_tokens_computed}, reused "
                f"{s.prefill_tokens_reused - before.prefill_tokens_reused}"
            )
        return outcomes

    def _jobs(
        self, requests: list[LLMRequest], compiled: list[Any], loaded: Loaded, adapter: str | None
    ) -> tuple[list[Job | None], dict[int, LLMResponse]]:
        from .sampling import make_row_sampling

        limit = context_limit(loaded.net.config)
        jobs: list[Job | None] = []
        errors: dict[int, LLMResponse] = {}
        for i, (request, schema) in enumerate(zip(requests, compiled, strict=True)):
            prompt = self.prompt_ids(request.messages)
            if len(prompt) >= limit:
                errors[i] = LLMResponse(
                    finish_reason="error", prompt_tokens=len(prompt),
                    error=f"prompt of {len(prompt)} tokens does not fit the model's context of {limit}",
                )  # fmt: skip
                jobs.append(None)
                continue
            s = request.sampling
            jobs.append(
                Job(
                    prompt=prompt,
                    max_tokens=min(s.max_tokens, limit - len(prompt)),
                    sampling=make_row_sampling(s.temperature, s.top_p, request.seed, request.sample_index),
                    schema=schema,
                    session=request.session,
                    adapter=adapter,
                )
            )
        return jobs, errors

    def _response(self, request: LLMRequest, job: Job, outcome: Outcome, loaded: Loaded) -> LLMResponse:
        text = loaded.tokenizer.decode(outcome.tokens, skip_special_tokens=True)
        response = LLMResponse(
            text=text, finish_reason=outcome.finish, prompt_tokens=len(job.prompt),
            completion_tokens=outcome.generated, latency_s=outcome.latency_s, error=outcome.error,
        )  # fmt: skip
        if request.json_schema is None or outcome.error is not None:
            return response
        parsed, problem = parse_json_output(text, request.json_schema)
        if problem is not None:
            return response.model_copy(update={"finish_reason": "error", "error": problem})
        return response.model_copy(update={"parsed": parsed})

    def choice_logprobs(
        self, prompts: Sequence[Prompt], choices: Sequence[str], adapter: str | None
    ) -> list[dict[str, float]]:
        """See HFModel.choice_logprobs; a plain-text prompt is tokenized as a document (BOS where the
        tokenizer adds one), a chat prompt through the chat template."""
        from .logprobs import choice_token_ids, next_token_logprobs

        with self._lock:
            loaded, _ = self._load()
            ids = choice_token_ids(loaded.tokenizer, choices)
            prompt_ids = [loaded.tokenizer(p)["input_ids"] if isinstance(p, str) else self.prompt_ids(p)
                          for p in prompts]
            # Small forwards (LOGPROB_ROWS, LOGPROB_TOKENS): on a CPU one forward over many padded rows
            # is slower than the same prompts in several smaller ones, since padding is computed like
            # real tokens and attention grows with the padded width.
            with loaded.active(adapter):
                rows = next_token_logprobs(
                    loaded.net, prompt_ids, ids, loaded.tokenizer.pad_token_id or 0,
                    min(self.options.max_batch_size, LOGPROB_ROWS), min(self.options.max_batch_tokens, LOGPROB_TOKENS),
                )  # fmt: skip
        return [dict(zip(choices, row, strict=True)) for row in rows]
