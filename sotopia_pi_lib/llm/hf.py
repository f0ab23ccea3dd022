"""The `hf` backend: a local transformers model (CPU or CUDA), optional LoRA adapter, optional 4-bit.

Options (spec.options, checked at construction; see hf_load.HFOptions): device, dtype, load_in_4bit,
max_batch_size, max_batch_tokens, kv_cache_bytes, jump_forward, pack_weights. Weights load on the
first generate/choice_logprobs call, never in the constructor or identity(): a fully cached re-run
must not load a model.

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

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import BackendError, ConfigError
from .base import LLM, Chain, Then
from .engine import EngineSettings, EngineUnavailable
from .fingerprint import adapter_hash, hub_weights_hash, is_local_model, tokenizer_hash, weights_hash
from .hf_load import Loaded, context_limit, load, parse_options, pick_device, pick_dtype, resolve_model
from .jobs import DecodeStats, Job, Outcome, Runner
from .json_output import check_schemas
from .schema import parse_json_output
from .types import LLMRequest, LLMResponse, Message, ModelSpec

LOGPROB_ROWS, LOGPROB_TOKENS = 8, 4096
log = logging.getLogger(__name__)
_warned: set[str] = set()  # each reason for the plain path is logged once per process


class _CallerError(Exception):
    """Carries an exception raised by generate_chained's callback out of the decode loop unchanged."""


class HFModel(LLM):
    def __init__(self, spec: ModelSpec) -> None:
        if spec.backend != "hf":
            raise ConfigError(f"HFModel needs an hf model spec, got backend {spec.backend!r}")
        self.spec = spec
        self.options = parse_options(spec)
        self._lock = threading.RLock()
        self._model_path: str | None = None
        self._identity: dict[str, Any] | None = None
        self._loaded: Loaded | None = None
        self._runner: Runner | None = None
        self._book: Any = None
        self.path: str | None = None  # "engine" or "plain" once loaded
        self.plain_reason: str | None = None  # why the plain path runs

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
        """Prefill tokens computed vs reused, decode tokens, time in forward/grammar/sampling."""
        return self._runner.stats if self._runner is not None else DecodeStats()

    def reset_stats(self) -> None:
        if self._runner is not None:
            self._runner.stats = DecodeStats()

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

    def _load(self) -> tuple[Loaded, Runner]:
        if self._loaded is None or self._runner is None:
            self._loaded = load(self.model_path, self.spec.adapter, self.options)
            self._runner = self._start_runner()
        return self._loaded, self._runner

    def _start_runner(self) -> Runner:
        """The engine, unless option engine is off or it refuses (hooks.py); else the plain path."""
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
                runner = engine.start(loaded.net, self.grammar_book, settings)
                self.path, self.plain_reason = "engine", None
                return runner
            except EngineUnavailable as e:
                if o.engine == "on":
                    raise BackendError(f"{self.spec.label}: hf option engine: on, but {e}") from e
                reason = str(e)
                if e.modified:  # the engine had already changed the model: load it afresh
                    self._loaded = loaded = load(self.model_path, self.spec.adapter, o)
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
        tokenizer = self._load()[0].tokenizer
        chat = [m.model_dump() for m in messages]
        try:
            return list(
                tokenizer.apply_chat_template(
                    chat, add_generation_prompt=True, tokenize=True, return_dict=False
                )
            )
        except Exception as e:  # noqa: BLE001 -- e.g. a template that rejects a system message
            raise BackendError(f"{self.spec.label}: the chat template failed: {type(e).__name__}: {e}") from e

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        requests = list(requests)
        check_schemas(requests)
        if not requests:
            return []
        with self._lock:
            loaded, runner = self._load()
            compiled = [
                self.grammar_book().compile(r.json_schema) if r.json_schema else None for r in requests
            ]
            jobs, errors = self._jobs(requests, compiled, loaded)
            runnable = [i for i, job in enumerate(jobs) if job is not None]
            outcomes = self._run(runner, [jobs[i] for i in runnable], progress)  # type: ignore[misc]
        by_index = dict(zip(runnable, outcomes, strict=True))
        return [
            errors[i] if i in errors else self._response(r, jobs[i], by_index[i], loaded)  # type: ignore[arg-type]
            for i, r in enumerate(requests)
        ]

    def generate_chained(self, first: Chain, then: Then, *, progress: bool = False) -> None:
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
                    jobs, errors = self._jobs([request], [schema], loaded)
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
                runner.run(jobs_for(first), on_done=done)
            except _CallerError as e:
                raise e.__cause__ from None  # type: ignore[misc]
            except (RuntimeError, MemoryError) as e:
                raise BackendError(f"{self.spec.label}: generation failed: {type(e).__name__}: {e}") from e

    def _run(self, engine: Runner, jobs: list[Job], progress: bool) -> list[Outcome]:
        bar = tqdm(total=len(jobs), desc=f"{self.spec.label} generate", disable=not progress, unit="req")
        before, t0 = engine.stats.model_copy(), time.perf_counter()

        def done(*_: Any) -> None:
            bar.update(1)
            bar.set_postfix_str(
                f"{(engine.stats.decode_tokens - before.decode_tokens) / (time.perf_counter() - t0):.1f} tok/s"
            )

        try:
            outcomes = engine.run(jobs, on_done=done)
        except (RuntimeError, MemoryError) as e:  # out of memory, a device error: say which model
            raise BackendError(f"{self.spec.label}: generation failed: {type(e).__name__}: {e}") from e
        finally:
            bar.close()
        if progress:
            s, seconds = engine.stats, time.perf_counter() - t0
            tokens = s.decode_tokens - before.decode_tokens
            tqdm.write(
                f"{self.spec.label}: {len(jobs)} requests, {tokens} tokens in {seconds:.1f} s "
                f"({tokens / max(seconds, 1e-9):.1f} tok/s); prompt tokens computed "
                f"{s.prefill_tokens_computed - before.prefill_tokens_computed}, reused "
                f"{s.prefill_tokens_reused - before.prefill_tokens_reused}"
            )
        return outcomes

    def _jobs(
        self, requests: list[LLMRequest], compiled: list[Any], loaded: Loaded
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
        self, prompts: Sequence[Sequence[Message]], choices: Sequence[str]
    ) -> list[dict[str, float]]:
        """Log-probability of each choice's first token as the reply's first token.

        The reply starts right after the template's "<|im_start|>assistant\\n", at the start of a line,
        where tokenizers write "A" without a leading space; so each choice is encoded as given (pass
        " A" to score the spaced variant). Choices must differ in their first token.
        """
        from .logprobs import choice_token_ids, next_token_logprobs

        with self._lock:
            loaded, _ = self._load()
            ids = choice_token_ids(loaded.tokenizer, choices)
            prompt_ids = [self.prompt_ids(p) for p in prompts]
            # Small forwards: on the CPU one forward of 32 padded rows (~8k tokens) took 3.5x longer than
            # the same prompts in forwards of <= 4,096 tokens (MMLU, 57 prompts: 52 s vs 15 s).
            rows = next_token_logprobs(
                loaded.net, prompt_ids, ids, loaded.tokenizer.pad_token_id or 0,
                min(self.options.max_batch_size, LOGPROB_ROWS), min(self.options.max_batch_tokens, LOGPROB_TOKENS),
            )  # fmt: skip
        return [dict(zip(choices, row, strict=True)) for row in rows]

    def close(self) -> None:
        with self._lock:
            if self._runner is not None:
                self._runner.close()
            self._runner = self._loaded = self._book = None
