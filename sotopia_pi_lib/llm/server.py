"""An OpenAI-compatible HTTP server over any LLM backend, with micro-batching.

The paper served its fine-tuned Mistral behind an OpenAI-compatible API, and SOTOPIA's own agent and
evaluator code talks to such an API; this server lets either drive any backend of this library.
Concurrent HTTP requests are gathered for a few milliseconds into ONE generate() call, because a
local model is much faster on one padded batch than on many single requests.

One server can serve several models under their served names (`ServedModels`); a request picks one
with its `model` field, as with vLLM's LoRA modules. A `Router` turns each HTTP request into a served
name and a library request: the default one reads the `model` field; a client that cannot choose the
names it sends (SOTOPIA's package only knows a closed list of OpenAI names) gets its own router (see
`sotopia_pi_lib.official.routing`), which may also supply a seed, a session hint, a JSON schema and a
record of every exchange.

Hardening, kept in its own functions below (`ServerLimits`, `check_limits`,
`precompile_schema`, `request_seed`, `model_card`, `exposure_warning`): a body, max_tokens and schema
size cap, each request's schema compiled alone before it joins a batch (so one client's bad schema
fails only its own request), a bounded queue answering 429 when full, a fresh seed for a sampled request
that sends none, and /v1/models reporting a hash of what is served, which clients key their caches on.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import json
import logging
import secrets
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import BackendError, ConfigError, SotopiaPiError
from .base import LLM
from .cache import model_hash
from .json_output import check_schemas
from .schema import canonical_schema
from .types import LLMRequest, LLMResponse, Message, SamplingParams

log = logging.getLogger(__name__)
# Parameters that would change the output if honoured: rejected unless left at their neutral value.
UNSUPPORTED = ("stream", "tools", "functions", "logprobs", "top_logprobs", "stop", "logit_bias",
               "presence_penalty", "frequency_penalty", "audio", "prediction")  # fmt: skip
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class WireError(Exception):
    """An error answered with OpenAI's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status, headers=self.headers)


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class WireMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[WireMessage] = Field(min_length=1)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    n: int | None = None
    response_format: ResponseFormat | None = None


def _message(wire: WireMessage) -> Message:
    content = wire.content if isinstance(wire.content, str) else "".join(p.text for p in wire.content)
    return Message(role=_ROLES[wire.role], content=content)  # type: ignore[arg-type]


def _schema(fmt: ResponseFormat | None) -> dict[str, Any] | None:
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "object"}
    if fmt.json_schema is None:
        raise WireError(
            400,
            "response_format.json_schema is required when type is json_schema",
            param="response_format.json_schema",
        )
    return fmt.json_schema.schema_


def to_llm_request(body: ChatCompletionRequest) -> LLMRequest:
    """The wire request as a library request; anything the server cannot honour is a 400."""
    extra = body.model_extra or {}
    for name in UNSUPPORTED:
        if extra.get(name):
            raise WireError(400, f"parameter {name!r} is not supported by this server", param=name)
    if (body.n or 1) != 1:
        raise WireError(400, "only n=1 is supported", param="n")
    try:
        defaults = SamplingParams()
        sampling = SamplingParams(
            temperature=defaults.temperature if body.temperature is None else body.temperature,
            top_p=defaults.top_p if body.top_p is None else body.top_p,
            max_tokens=body.max_completion_tokens or body.max_tokens or defaults.max_tokens,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise WireError(400, f"{err['loc'][0]}: {err['msg']}", param=str(err["loc"][0])) from None
    request = LLMRequest(
        messages=tuple(_message(m) for m in body.messages),
        json_schema=_schema(body.response_format),
        sampling=sampling,
        seed=request_seed(body.seed, sampling),
    )
    try:
        check_schemas([request])
    except ConfigError as exc:
        raise WireError(400, str(exc).removeprefix("request 0: "), param="response_format") from None
    return request


def to_wire_response(response: LLMResponse, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": response.text},
                "finish_reason": response.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": response.prompt_tokens,
            "completion_tokens": response.completion_tokens,
            "total_tokens": response.prompt_tokens + response.completion_tokens,
        },
    }


class MicroBatcher:
    """Gathers requests arriving within `max_wait_s` (or until `max_batch`) into one generate() call.

    generate() runs in a worker thread so the event loop keeps accepting requests meanwhile; those
    queue up and form the next batch, so under load batches grow by themselves.
    """

    def __init__(self, llm: LLM, max_batch: int = 32, max_wait_s: float = 0.01, max_queue: int = 256) -> None:
        self.llm, self.max_batch, self.max_wait_s = llm, max_batch, max_wait_s
        self.queue: asyncio.Queue[tuple[LLMRequest, asyncio.Future[LLMResponse]]] = asyncio.Queue(max_queue)
        self.batch_sizes: list[int] = []

    async def submit(self, request: LLMRequest) -> LLMResponse:
        """Queue a request; a full queue is a 429 at once (with Retry-After), not an unbounded wait."""
        future: asyncio.Future[LLMResponse] = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((request, future))
        except asyncio.QueueFull:
            raise WireError(429, f"the server is busy ({self.queue.maxsize} requests queued); retry shortly",
                            code="queue_full", kind="server_error", headers={"retry-after": "1"}) from None
        return await future

    async def run(self) -> None:
        while True:
            items = await self._collect()
            live = [(r, f) for r, f in items if not f.done()]  # skip clients that went away
            if not live:
                continue
            self.batch_sizes.append(len(live))
            responses = await self._generate([r for r, _ in live])
            for (_, future), response in zip(live, responses, strict=True):
                if not future.done():
                    if isinstance(response, Exception):
                        future.set_exception(response)
                    else:
                        future.set_result(response)

    async def _generate(self, requests: list[LLMRequest]) -> list[LLMResponse | Exception]:
        """One generate() call; if it fails as a whole, each request is tried alone, so a request that
        breaks the batch (a schema the backend cannot compile, say) fails only itself."""
        try:
            return list(await asyncio.to_thread(self.llm.generate, requests))
        except Exception as exc:
            if len(requests) == 1:
                log.warning("generate() failed: %s: %s", type(exc).__name__, exc)
                return [exc]
            log.warning("generate() failed for a batch of %d (%s); trying each alone", len(requests), exc)
        return [(await self._generate([r]))[0] for r in requests]

    async def _collect(self) -> list[tuple[LLMRequest, asyncio.Future[LLMResponse]]]:
        items = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while len(items) < self.max_batch:
            try:
                items.append(
                    await asyncio.wait_for(self.queue.get(), deadline - asyncio.get_running_loop().time())
                )
            except TimeoutError:
                break
        return items

class ServedModels:
    """Served name -> model, with one micro-batcher per distinct model: two names over one LLM
    object (say the partner and the judge, both the embedded model) share its batches."""

    def __init__(self, models: Mapping[str, LLM], max_batch: int = 32, max_wait_s: float = 0.01,
                 max_queue: int = 256) -> None:
        if not models:
            raise ConfigError("a server needs at least one served model")
        self.models = dict(models)
        by_object: dict[int, MicroBatcher] = {}
        self.batchers = {
            name: by_object.setdefault(id(llm), MicroBatcher(llm, max_batch=max_batch, max_wait_s=max_wait_s,
                                                                    max_queue=max_queue))
            for name, llm in self.models.items()
        }

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def distinct_batchers(self) -> list[MicroBatcher]:
        return list({id(b): b for b in self.batchers.values()}.values())

    def check(self, name: str) -> None:
        if name not in self.models:
            served = ", ".join(repr(n) for n in self.names)
            raise WireError(
                404,
                f"model {name!r} does not exist; this server serves {served}",
                param="model",
                code="model_not_found",
            )


@dataclass(frozen=True)
class Routed:
    """Where one HTTP request goes: a served name, the library request, and the router's own note
    about it (handed back to `Router.record` once the response is out)."""

    name: str
    request: LLMRequest
    note: Any = None


class Router(Protocol):
    def route(self, body: ChatCompletionRequest, headers: Mapping[str, str], served: ServedModels) -> Routed:
        """The served name and library request for one HTTP request (WireError if it has none)."""

    def record(self, routed: Routed, response: LLMResponse) -> None:
        """Called after every successful completion (bookkeeping; must not raise)."""


class ByModelName:
    """The standard route: the `model` field names the served model."""

    def route(self, body: ChatCompletionRequest, headers: Mapping[str, str], served: ServedModels) -> Routed:
        served.check(body.model)
        return Routed(body.model, to_llm_request(body))

    def record(self, routed: Routed, response: LLMResponse) -> None:
        pass


def served_models(llm: LLM | Mapping[str, LLM], model_name: str | None) -> dict[str, LLM]:
    """`create_app`'s first argument as a name -> model mapping (one model needs `model_name`)."""
    if isinstance(llm, Mapping):
        if model_name is not None:
            raise ConfigError("give served names as the mapping's keys, not also as model_name")
        return dict(llm)
    if model_name is None:
        raise ConfigError("serving one model needs its model_name")
    return {model_name: llm}


def create_app(
    llm: LLM | Mapping[str, LLM],
    *,
    model_name: str | None = None,
    api_key: str | None = None,
    max_batch: int = 32,
    max_wait_ms: float = 10.0,
    router: Router | None = None,
    limits: ServerLimits | None = None,
) -> FastAPI:
    """The app over one model (`llm` and its `model_name`) or several (`{served name: llm}`).
    `api_key` (if given) is required as `Authorization: Bearer KEY` on /v1 routes; `router` (default:
    by the `model` field) decides which served model answers a request; `limits` bound what one
    request may ask."""
    limits = limits or ServerLimits()
    served = ServedModels(served_models(llm, model_name), max_batch=max_batch, max_wait_s=max_wait_ms / 1000,
                          max_queue=limits.max_queue)
    router = router or ByModelName()

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        tasks = [asyncio.create_task(b.run()) for b in served.distinct_batchers()]
        yield
        for task in tasks:
            task.cancel()

    app = FastAPI(title="sotopia-pi-lib OpenAI-compatible server", lifespan=lifespan,
                  max_body_size=limits.max_body_bytes)  # 413 past it, counted as the body arrives
    app.state.served = served
    app.state.batcher = served.batchers[served.names[0]]  # the first model's (one-model servers: its only one)
    cards: dict[str, dict[str, Any]] = {}

    @app.middleware("http")
    async def require_key(request: Request, call_next):  # noqa: ANN001, ANN202
        if api_key and request.url.path.startswith("/v1"):
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                return WireError(401, "Incorrect API key provided.", code="invalid_api_key").response()
        return await call_next(request)

    @app.exception_handler(WireError)
    async def wire_error(_: Request, exc: WireError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        if err.get("type") == "json_invalid":
            reason = err.get("ctx", {}).get("error", "")
            return WireError(400, f"the request body is not valid JSON: {reason}").response()
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or None
        message = f"{where or 'body'}: {err.get('msg', 'invalid request')}"
        return WireError(400, message, param=where).response()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [await model_card(n, served.models[n], cards) for n in served.names]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> dict[str, Any]:
        routed = router.route(body, request.headers, served)
        check_limits(body, limits)
        precompile_schema(routed.request.json_schema)
        try:
            response = await served.batchers[routed.name].submit(routed.request)
        except WireError:
            raise
        except SotopiaPiError as exc:
            raise WireError(400, str(exc)) from None
        except Exception as exc:
            raise WireError(500, f"generation failed: {type(exc).__name__}", kind="server_error") from None
        if response.error is not None:  # failed for good (see LLM): 422, which clients do not retry
            raise WireError(422, f"generation failed: {response.error}", code="generation_failed")
        router.record(routed, response)
        return to_wire_response(response, routed.name)

    return app


class BackgroundServer:
    """uvicorn serving `app` from a daemon thread, on a socket bound before start (port 0: any free
    port, read back from `.port`), so there is no race for the port. The sotopia style
    (official/session.py) and the tests serve models in-process this way."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=5)
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise BackendError(f"the server on {self.base_url} did not start within {timeout_s:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


# -- hardening ------------------------------------------------------------------------------------


class ServerLimits(BaseModel):
    """What one request may ask of the server, so that one client cannot exhaust it for the others."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="413 beyond this request size")
    max_tokens: int = Field(4096, ge=1, description="400 when a request asks for more completion tokens")
    max_schema_bytes: int = Field(32 * 1024, ge=64, description="400 for a larger response_format schema")
    max_schema_depth: int = Field(24, ge=2, description="400 for a schema nested deeper than this")
    max_queue: int = Field(256, ge=1, description="requests waiting for a batch; 429 when full")


def _depth(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + max((_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((_depth(v) for v in node), default=0)
    return 0


def check_limits(body: ChatCompletionRequest, limits: ServerLimits) -> None:
    """max_tokens and the response_format schema within the server's limits, else a 400 naming them."""
    asked = body.max_completion_tokens or body.max_tokens
    if asked is not None and asked > limits.max_tokens:
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise WireError(400, f"{param} {asked} is above this server's limit of {limits.max_tokens}", param=param)
    fmt = body.response_format
    schema = fmt.json_schema.schema_ if fmt is not None and fmt.json_schema is not None else None
    if schema is None:
        return
    size = len(json.dumps(schema, separators=(",", ":")))
    if size > limits.max_schema_bytes:
        raise WireError(400, f"json_schema of {size} bytes is above this server's limit of "
                             f"{limits.max_schema_bytes}", param="response_format")
    if _depth(schema) > limits.max_schema_depth:
        raise WireError(400, f"json_schema nested deeper than this server's limit of {limits.max_schema_depth}",
                        param="response_format")


def precompile_schema(schema: dict[str, Any] | None) -> None:
    """Compile the schema to a grammar alone, before it joins a batch: a schema the checker accepts but
    xgrammar cannot compile (e.g. a pattern with `\\b`) would otherwise fail every request batched with
    it. xgrammar's grammar is tokenizer-free, so this costs milliseconds and needs no model."""
    if schema is not None:
        problem = _compile_problem(canonical_schema(schema))
        if problem:
            raise WireError(400, f"json_schema cannot be compiled for constrained decoding: {problem}",
                            param="response_format")


@lru_cache(maxsize=512)
def _compile_problem(canonical: str) -> str | None:
    import xgrammar as xg

    try:
        xg.Grammar.from_json_schema(canonical, any_whitespace=False, strict_mode=True)
    except Exception as exc:  # noqa: BLE001 -- xgrammar raises RuntimeError with its parser's message
        return str(exc).strip().splitlines()[-1][:300]
    return None


def request_seed(seed: int | None, sampling: SamplingParams) -> int:
    """The client's seed; for a sampled request without one, a fresh random seed. A fixed default
    would make every repeated sampled request come back identical (and hit any cache behind us)."""
    if seed is not None:
        return seed
    return secrets.randbelow(2**31) if sampling.temperature > 0 else 0


async def model_card(name: str, llm: LLM, memo: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The /v1/models card, with `identity_sha256`: the hash of what `llm` is (weights, adapter,
    dtype, ...), so a client can tell one served model from another served under the same name.
    Computed once per app (`memo`): identity() hashes weight files."""
    if name not in memo:
        card: dict[str, Any] = {"id": name, "object": "model", "created": 0, "owned_by": "sotopia-pi-lib"}
        try:
            card["identity_sha256"] = await asyncio.to_thread(lambda: model_hash(llm.identity()))
        except Exception as exc:  # noqa: BLE001 -- an unidentifiable model is served, just not vouched for
            log.warning("cannot identify the served model %s: %s", name, exc)
        memo[name] = card
    return dict(memo[name])


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """A warning when the server listens beyond loopback without a key: anyone who can reach the port
    could then run generations on this machine."""
    if api_key:
        return None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"warning: serving on {host} without an API key: anyone who can reach this port can use the "
            "model; pass --api-key-env VAR or bind to 127.0.0.1")


class FaultPlan(BaseModel):
    """Failures injected into chat requests, for tests of client retries: of every `period` requests
    (counted on arrival, whatever the model), the first ones are answered with `statuses` in turn,
    as OpenAI's API answers when rate-limited (429) or failing (500)."""

    model_config = ConfigDict(extra="forbid")

    period: int = Field(4, ge=1)
    statuses: tuple[int, ...] = (429, 500)
    retry_after_s: float = Field(0.01, ge=0.0, description="the Retry-After header of each injected failure "
                                 "(the openai SDK waits that long before its retry instead of its 0.5 s back-off)")


def inject_faults(app: FastAPI, plan: FaultPlan) -> Counter[int]:
    """Make `app` fail chat requests by `plan`; returns the live count of injected failures by status."""
    injected: Counter[int] = Counter()
    arrivals = itertools.count()

    @app.middleware("http")
    async def fail_some(request: Request, call_next):  # noqa: ANN001, ANN202
        if request.method == "POST" and request.url.path == "/v1/chat/completions":
            k = next(arrivals) % plan.period
            if k < len(plan.statuses):
                status = plan.statuses[k]
                injected[status] += 1
                kind = "rate_limit_error" if status == 429 else "server_error"
                response = WireError(status, f"injected failure ({status})", kind=kind).response()
                response.headers["retry-after"] = str(plan.retry_after_s)
                return response
        return await call_next(request)

    app.state.injected = injected
    return injected
