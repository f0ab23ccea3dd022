"""Any OpenAI-compatible endpoint (OpenAI, `vllm serve`, the project's own server) behind the LLM interface.

Requests of a batch run concurrently (bounded) on a private event loop in a worker thread, so
generate() behaves the same from a script and from a Jupyter cell whose loop is already running.
Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential back-off and
jitter; a request that still fails comes back with `error` set and never takes the batch down.
The API key is read from the environment into the client only: never into the spec, identity or logs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Coroutine, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm.auto import tqdm

from ..errors import ConfigError
from .base import LLM, Chain, Then
from .json_output import (
    StructuredMode,
    check_schemas,
    derive_seed,
    parse_structured,
    repair_turns,
    structured_prompt,
)
from .pricing import UsageSummary, find_price, price_table
from .types import LLMRequest, LLMResponse, ModelSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
_FALLBACK: dict[str, StructuredMode] = {"json_schema": "json_object", "json_object": "prompt"}


class OpenAIOptions(BaseModel):
    """`spec.options` of the openai backend."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the env var holding the key")
    max_concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, description="retries after the first try, transient errors only")
    backoff_s: float = Field(1.0, ge=0, description="first back-off; doubles each retry, with jitter")
    backoff_max_s: float = Field(30.0, ge=0)
    structured: Literal["json_schema", "json_object", "prompt", "auto"] = Field(
        "auto", description="auto: json_schema, falling back to json_object, then to prompting"
    )
    repair_attempts: int = Field(2, ge=0, description="re-asks with the validation error sent back")
    prices: dict[str, Any] = Field(default_factory=dict, description="model -> USD per 1M tokens")


class _RequestFailed(Exception):
    """A request failed for good (after retries, or on a non-transient error)."""


def parse_options(spec: ModelSpec) -> OpenAIOptions:
    try:
        return OpenAIOptions.model_validate(spec.options)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"model spec {spec.label}: options.{key}: {err['msg']}") from None


def is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_api_key(spec: ModelSpec, options: OpenAIOptions) -> str:
    """The key from the environment; a loopback server without a key configured gets a dummy one."""
    key = os.environ.get(options.api_key_env, "")
    if key:
        return key
    if is_loopback(options.base_url):
        return "EMPTY"
    raise ConfigError(
        f"model spec {spec.label}: environment variable {options.api_key_env} is not set; it must hold "
        f"the API key for {urlsplit(options.base_url).hostname} (options.api_key_env names the variable; "
        "for a server without authentication set it to any value)"
    )


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    return isinstance(exc, openai.APIStatusError) and (
        exc.status_code in (408, 409, 429) or exc.status_code >= 500
    )


def backoff_delay(attempt: int, options: OpenAIOptions, retry_after: float | None = None) -> float:
    """Exponential back-off with jitter in [50%, 100%], so many clients do not retry in lockstep."""
    delay = min(options.backoff_max_s, options.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
    return min(options.backoff_max_s, max(delay, retry_after or 0.0))


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    try:
        return float(response.headers["retry-after"]) if response is not None else None
    except (KeyError, ValueError):
        return None


class _LoopThread:
    """An event loop running forever in a daemon thread: coroutines are submitted from any thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


class OpenAIModel(LLM):
    def __init__(self, spec: ModelSpec) -> None:
        if spec.adapter:
            raise ConfigError(
                f"model spec {spec.label}: the openai backend takes no adapter; serve it "
                "with the adapter (e.g. `vllm serve --lora-modules`) and name that model"
            )
        self.spec = spec
        self.options = parse_options(spec)
        self._mode: StructuredMode = (
            "json_schema" if self.options.structured == "auto" else self.options.structured
        )
        self._price = find_price(spec.model, price_table(self.options.prices))
        self._usage = UsageSummary(priced=self._price is not None)
        self._loop = _LoopThread(name=f"openai-{spec.model}")
        self._client = self._loop.run(self._make_client(resolve_api_key(spec, self.options)))
        weakref.finalize(self, self._loop.close)  # a forgotten model does not leak its thread

    async def _make_client(self, api_key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=api_key, base_url=self.options.base_url, timeout=self.options.timeout_s, max_retries=0
        )

    def identity(self) -> dict[str, Any]:
        host = urlsplit(self.options.base_url).netloc.rpartition("@")[2]  # never userinfo
        return {
            "backend": "openai",
            "host": host,
            "model": self.spec.model,
            "structured": self.options.structured,
        }

    def usage_summary(self) -> UsageSummary:
        return self._usage.model_copy()

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        check_schemas(requests)
        before = self._usage.model_copy()
        responses = self._loop.run(self._run_batch(list(requests), progress))
        log.info("%s: %s", self.spec.label, self._usage.since(before).line())
        return responses

    def generate_chained(self, first: Chain, then: Then, *, progress: bool = False) -> None:
        """Each follow-up is sent as soon as its answer is in (up to max_concurrency in flight), so an
        episode never waits for another episode's slow reply. `then` runs on the client's event-loop
        thread, one call at a time."""
        before = self._usage.model_copy()
        self._loop.run(self._run_chain(first, then))
        log.info("%s: %s", self.spec.label, self._usage.since(before).line())

    async def _run_chain(self, first: Chain, then: Then) -> None:
        limit = asyncio.Semaphore(self.options.max_concurrency)
        running: set[asyncio.Task[tuple[Any, LLMResponse]]] = set()

        async def one(key: Any, request: LLMRequest) -> tuple[Any, LLMResponse]:
            async with limit:
                try:
                    return key, await self._complete(request)
                except Exception as exc:  # noqa: BLE001 -- fail this request only, as in generate()
                    return key, self._fail(LLMResponse(), self._describe(exc), time.perf_counter())

        def launch(pairs: Chain) -> None:
            for key, request in pairs:
                check_schemas([request])  # scheduled tasks start only at the next await
                running.add(asyncio.ensure_future(one(key, request)))

        try:
            launch(first)
            while running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.discard(task)
                    launch(then(*task.result()))
        finally:  # `then` raised (or we were cancelled): stop what is still in flight
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def close(self) -> None:
        if self._loop.loop.is_running():
            self._loop.run(self._client.close())
        self._loop.close()

    async def _run_batch(self, requests: list[LLMRequest], progress: bool) -> list[LLMResponse]:
        limit = asyncio.Semaphore(self.options.max_concurrency)
        bar = tqdm(total=len(requests), desc=self.spec.label, disable=not progress)

        async def one(request: LLMRequest) -> LLMResponse:
            async with limit:
                try:
                    response = await self._complete(request)
                except Exception as exc:  # noqa: BLE001 -- e.g. a malformed reply: fail this request only
                    response = self._fail(LLMResponse(), self._describe(exc), time.perf_counter())
            bar.update(1)
            return response

        try:
            return list(await asyncio.gather(*(one(r) for r in requests)))
        finally:
            bar.close()

    async def _complete(self, request: LLMRequest) -> LLMResponse:
        start = time.perf_counter()
        self._usage.requests += 1
        result = LLMResponse()
        conversation: list[dict[str, str]] = []
        for attempt in range(self.options.repair_attempts + 1):
            try:
                completion = await self._create(request, conversation)
            except _RequestFailed as exc:
                return self._fail(result, str(exc), start)
            choice, usage = completion.choices[0], completion.usage
            text = choice.message.content or ""
            result = LLMResponse(
                text=text,
                finish_reason="length" if choice.finish_reason == "length" else "stop",
                prompt_tokens=result.prompt_tokens + (usage.prompt_tokens if usage else 0),
                completion_tokens=result.completion_tokens + (usage.completion_tokens if usage else 0),
            )
            if request.json_schema is None:
                return result.model_copy(update={"latency_s": time.perf_counter() - start})
            parsed, problem = parse_structured(text, request.json_schema)
            if problem is None:
                return result.model_copy(update={"parsed": parsed, "latency_s": time.perf_counter() - start})
            if attempt < self.options.repair_attempts:
                self._usage.repairs += 1
                conversation += repair_turns(text, problem)
        return self._fail(
            result, f"no valid JSON after {self.options.repair_attempts} repair attempts: {problem}", start
        )

    def _fail(self, result: LLMResponse, error: str, start: float) -> LLMResponse:
        self._usage.failures += 1
        log.warning("%s: request failed: %s", self.spec.label, error)
        return result.model_copy(
            update={
                "finish_reason": "error",
                "error": error,
                "parsed": None,
                "latency_s": time.perf_counter() - start,
            }
        )

    async def _create(self, request: LLMRequest, conversation: list[dict[str, str]]) -> Any:
        """One chat completion, retried on transient errors; downgrades the structured-output mode
        when the server rejects `response_format` (older models, servers without json_schema)."""
        attempt = 0
        while True:
            mode = self._mode
            kwargs = self._create_kwargs(request, mode, conversation)
            try:
                completion = await self._client.chat.completions.create(**kwargs)
            except openai.BadRequestError as exc:
                if self._can_downgrade(exc, mode):
                    continue
                raise _RequestFailed(self._describe(exc)) from None
            except openai.OpenAIError as exc:
                if not is_transient(exc) or attempt >= self.options.max_retries:
                    tries = f" after {attempt + 1} attempts" if is_transient(exc) else ""
                    raise _RequestFailed(self._describe(exc) + tries) from None
                self._usage.retries += 1
                await asyncio.sleep(backoff_delay(attempt, self.options, _retry_after(exc)))
                attempt += 1
                continue
            self._account(completion)
            return completion

    def _can_downgrade(self, exc: openai.BadRequestError, mode: StructuredMode) -> bool:
        if self.options.structured != "auto" or mode not in _FALLBACK:
            return False
        if exc.param != "response_format" and "response_format" not in str(exc):
            return False
        if self._mode == mode:  # concurrent requests may have downgraded already
            self._mode = _FALLBACK[mode]
            log.info("%s: server rejected response_format %s; using %s", self.spec.label, mode, self._mode)
        return True

    def _create_kwargs(
        self, request: LLMRequest, mode: StructuredMode, conversation: list[dict[str, str]]
    ) -> dict:
        messages = [m.model_dump() for m in request.messages]
        kwargs: dict[str, Any] = {}
        if request.json_schema is not None:
            messages, kwargs = structured_prompt(messages, request.json_schema, mode)
        s = request.sampling
        return {
            "model": self.spec.model,
            "messages": messages + conversation,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "seed": derive_seed(request.seed, request.sample_index),
            **kwargs,
        }

    def _account(self, completion: Any) -> None:
        usage = completion.usage
        self._usage.record(
            usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0, self._price
        )

    def _describe(self, exc: Exception) -> str:
        """An error message safe to log and store: never the key, not even the part a 401 echoes."""
        if isinstance(exc, openai.AuthenticationError):
            return f"authentication failed (HTTP 401): check the key in ${self.options.api_key_env}"
        status = getattr(exc, "status_code", None)
        text = f"HTTP {status}: {exc}" if status else f"{type(exc).__name__}: {exc}"
        key = self._client.api_key
        return text.replace(key, "***") if key else text
