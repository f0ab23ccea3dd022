"""Any OpenAI-compatible endpoint (OpenAI, `vllm serve`, the project's own server) behind the LLM interface.

Requests of a batch run concurrently (bounded) on a private event loop in a worker thread, so
generate() behaves the same from a script and from a Jupyter cell whose loop is already running.
Transient failures (429, 408, 409, 5xx, timeouts, dropped connections) are retried by the openai SDK
itself: exponential back-off with jitter, honouring Retry-After in all its forms (seconds, HTTP date,
`retry-after-ms`). What the SDK lacks is added here: repair rounds that send a schema violation back,
falling back to a weaker structured-output mode, and isolation (a request that still fails comes back
with `error` set and never takes the batch down). Permanent errors (401, 403, an exhausted quota, an
unknown model) are never retried and raise `PermanentAPIError` at the first one: every later request
would fail the same way, and a stage should stop with one clear message rather than record thousands of
identical failures. The API key is read from the environment into the client only: never into the spec,
identity, logs or errors.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import threading
import time
import weakref
from collections.abc import Coroutine, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm.auto import tqdm

from ..errors import BackendError, ConfigError
from ..redact import register_secret_env, scrub_text
from .base import LLM, Chain, Then
from .json_output import (
    StructuredMode,
    check_schemas,
    derive_seed,
    repair_turns,
    structured_prompt,
)
from .pricing import UsageSummary, find_price, price_table
from .schema import parse_json_output
from .types import LLMRequest, LLMResponse, ModelSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
_FALLBACK: dict[str, StructuredMode] = {"json_schema": "json_object", "json_object": "prompt"}
# Error codes in a 4xx body that no retry can fix (OpenAI's and vLLM's spelling).
PERMANENT_CODES = frozenset({"insufficient_quota", "invalid_api_key", "model_not_found",
                             "account_deactivated", "billing_hard_limit_reached"})
OPENAI_HOST = "api.openai.com"  # lists hundreds of models and reports no weights: not asked for its identity
SERVED_FIELDS = ("identity_sha256", "root", "parent")  # what a /v1/models card may say about its weights


class OpenAIOptions(BaseModel):
    """`spec.options` of the openai backend."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the env var holding the key")
    max_concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(
        5, ge=0, description="the SDK's retries of transient errors (back-off with jitter, Retry-After)"
    )
    structured: Literal["json_schema", "json_object", "prompt", "auto"] = Field(
        "auto", description="auto: json_schema, falling back to json_object, then to prompting"
    )
    repair_attempts: int = Field(2, ge=0, description="re-asks with the validation error sent back")
    prices: dict[str, Any] = Field(default_factory=dict, description="model -> USD per 1M tokens")


class _RequestFailed(Exception):
    """A request failed for good (after the SDK's retries, or on a non-transient error)."""


class PermanentAPIError(BackendError):
    """The endpoint refused in a way no retry fixes (bad key, no permission, no quota, unknown model)."""


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
    register_secret_env(options.api_key_env)  # its value is masked wherever the library writes text
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
    """What the SDK retries (see `openai._base_client._should_retry`), for the error message."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    return isinstance(exc, openai.APIStatusError) and (
        exc.status_code in (408, 409, 429) or exc.status_code >= 500
    )


def error_code(exc: Exception) -> str | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else None


def permanent_reason(exc: Exception, spec: ModelSpec, options: OpenAIOptions) -> str | None:
    """Why `exc` means no request to this endpoint can succeed, or None when it is not that kind."""
    where = f"{spec.model} at {endpoint(options.base_url)}"
    code = error_code(exc)
    if isinstance(exc, openai.AuthenticationError) or code == "invalid_api_key":
        return f"authentication failed (HTTP 401) for {where}: check the key in ${options.api_key_env}"
    if isinstance(exc, openai.PermissionDeniedError):
        return f"permission denied (HTTP 403) for {where}: the key in ${options.api_key_env} may not use it"
    if code in ("insufficient_quota", "billing_hard_limit_reached", "account_deactivated"):
        return f"the account behind ${options.api_key_env} cannot pay for {where} ({code}): add credit or use another key"
    if isinstance(exc, openai.NotFoundError) or code == "model_not_found":
        return f"model not found: {where} (HTTP 404; check the model name and options.base_url)"
    return None


def _body_code(response: Any) -> str | None:
    try:
        error = response.json().get("error") or {}
        return error.get("code") if isinstance(error, dict) else None
    except Exception:  # noqa: BLE001 -- no (readable) JSON body: nothing to say
        return None


class _Client(openai.AsyncOpenAI):
    """The SDK's client, except that a 429 whose body says the quota is gone is not retried.

    The SDK retries every 429 (and has no hook for it): an `insufficient_quota` 429 would be asked
    again `max_retries` times with back-off before the stage could stop; nothing else is changed.
    """

    def _should_retry(self, response: Any) -> bool:
        if response.status_code == 429 and _body_code(response) in PERMANENT_CODES:
            return False
        return super()._should_retry(response)


def endpoint(base_url: str) -> str:
    """The base URL as identity and messages show it: scheme, host, port and path; never a user,
    password or query string (where keys hide)."""
    parts = urlsplit(base_url.strip())
    host = (parts.hostname or "").lower()
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


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
        self._identity: dict[str, Any] | None = None
        self._loop = _LoopThread(name=f"openai-{spec.model}")
        self._client = self._loop.run(self._make_client(resolve_api_key(spec, self.options)))
        weakref.finalize(self, self._loop.close)  # a forgotten model does not leak its thread

    async def _make_client(self, api_key: str) -> openai.AsyncOpenAI:
        http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [self._count_retry]})
        return _Client(api_key=api_key, base_url=self.options.base_url, timeout=self.options.timeout_s,
                       max_retries=self.options.max_retries, http_client=http)

    async def _count_retry(self, request: Any) -> None:
        """The SDK numbers each attempt in a header; every one after the first is a retry."""
        if request.headers.get("x-stainless-retry-count", "0") != "0":
            self._usage.retries += 1

    def identity(self) -> dict[str, Any]:
        """The full endpoint (another port or path is another server) and, when the server reports it,
        what it serves: the same name served with other weights or another adapter must not replay
        the old answers. Asked once per model object; a server that cannot be asked is an error."""
        if self._identity is None:
            identity: dict[str, Any] = {"backend": "openai", "base_url": endpoint(self.options.base_url),
                                        "model": self.spec.model, "structured": self.options.structured}
            served = self._served_identity()
            if served:
                identity["served"] = served
            self._identity = identity
        return dict(self._identity)

    def _served_identity(self) -> dict[str, Any]:
        """The fields of this model's /models card that name its weights (the project's server reports
        `identity_sha256`; vLLM reports `root` and, for an adapter, `parent`)."""
        if urlsplit(self.options.base_url).hostname == OPENAI_HOST:
            return {}
        async def cards() -> list[Any]:
            return (await self._client.models.list()).data

        try:
            listed = self._loop.run(cards())
        except openai.APIStatusError:  # a server without /models reports nothing
            return {}
        except openai.OpenAIError as exc:
            raise BackendError(
                f"{self.spec.label}: cannot ask {endpoint(self.options.base_url)}/models what it serves "
                f"({self._describe(exc)}); the response cache keys on it, so the server must be up"
            ) from None
        card = next((c for c in listed if c.id == self.spec.model), None)
        extra = card.model_dump() if card is not None else {}
        return {k: extra[k] for k in SERVED_FIELDS if extra.get(k) is not None}

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
                return key, await self._isolated(request)

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
                response = await self._isolated(request)
            bar.update(1)
            return response

        tasks = [asyncio.ensure_future(one(r)) for r in requests]
        try:
            if tasks:  # a permanent error ends the batch at once; the requests still in flight are cancelled
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                failed = next((t.exception() for t in done if t.exception() is not None), None)
                if failed is not None:
                    raise failed
            return [t.result() for t in tasks]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            bar.close()

    async def _isolated(self, request: LLMRequest) -> LLMResponse:
        """One request whose failure stays its own (the SDK has no per-request isolation in a batch);
        only a permanent error escapes, to stop the caller."""
        try:
            return await self._complete(request)
        except PermanentAPIError:
            raise
        except Exception as exc:  # noqa: BLE001 -- e.g. a malformed reply: fail this request only
            return self._fail(LLMResponse(), self._describe(exc), time.perf_counter())

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
            parsed, problem = parse_json_output(text, request.json_schema, surrounding_text=True)
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
        """One chat completion (the SDK retries transient errors); downgrades the structured-output mode
        when the server rejects `response_format` (older models, servers without json_schema)."""
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
                reason = permanent_reason(exc, self.spec, self.options)
                if reason is not None:
                    raise PermanentAPIError(f"{self.spec.label}: {reason}; stopped at the first such error "
                                            "(finished work is kept; re-run once it is fixed)") from None
                tries = f" after {self.options.max_retries + 1} attempts" if is_transient(exc) else ""
                raise _RequestFailed(self._describe(exc) + tries) from None
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
        return scrub_text(text.replace(key, "***") if key else text)
