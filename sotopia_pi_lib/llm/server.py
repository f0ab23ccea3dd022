"""An OpenAI-compatible HTTP server over any LLM backend, with micro-batching.

The paper served its fine-tuned Mistral behind an OpenAI-compatible API, and SOTOPIA's own agent and
evaluator code talks to such an API; this server lets either drive any backend of this library.
Concurrent HTTP requests are gathered for a few milliseconds into ONE generate() call, because a
local model is much faster on one padded batch than on many single requests.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, SotopiaPiError
from .base import LLM
from .json_output import check_schemas
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
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status)


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
        seed=body.seed or 0,
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

    def __init__(self, llm: LLM, max_batch: int = 32, max_wait_s: float = 0.01) -> None:
        self.llm, self.max_batch, self.max_wait_s = llm, max_batch, max_wait_s
        self.queue: asyncio.Queue[tuple[LLMRequest, asyncio.Future[LLMResponse]]] = asyncio.Queue()
        self.batch_sizes: list[int] = []

    async def submit(self, request: LLMRequest) -> LLMResponse:
        future: asyncio.Future[LLMResponse] = asyncio.get_running_loop().create_future()
        await self.queue.put((request, future))
        return await future

    async def run(self) -> None:
        while True:
            items = await self._collect()
            live = [(r, f) for r, f in items if not f.done()]  # skip clients that went away
            if not live:
                continue
            self.batch_sizes.append(len(live))
            try:
                responses = await asyncio.to_thread(self.llm.generate, [r for r, _ in live])
            except Exception as exc:  # the whole call failed: every waiting request gets the error
                log.exception("generate() failed for a batch of %d", len(live))
                responses = [exc] * len(live)
            for (_, future), response in zip(live, responses, strict=True):
                if not future.done():
                    if isinstance(response, Exception):
                        future.set_exception(response)
                    else:
                        future.set_result(response)

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


def served_models(llm: LLM | Mapping[str, LLM], model_name: str | None) -> dict[str, LLM]:
    """Served name -> model: one model under `model_name`, or a mapping of several. Several names
    may serve one model (the rehearsal profile asks the embedded model as expert, partner and judge,
    each under its own name, so that clients cache and account per role)."""
    if isinstance(llm, LLM):
        if not model_name:
            raise ConfigError("serving one model needs its model_name")
        return {model_name: llm}
    if model_name is not None or not llm:
        raise ConfigError("serve several models as a mapping of served name -> model, without model_name")
    return dict(llm)


def create_app(
    llm: LLM | Mapping[str, LLM], *, model_name: str | None = None, api_key: str | None = None,
    max_batch: int = 32, max_wait_ms: float = 10.0,
) -> FastAPI:  # fmt: skip
    """The app over one model (`model_name`) or a mapping served name -> model, each behind its own
    micro-batcher; `api_key` (if given) is required as `Authorization: Bearer KEY` on /v1 routes."""
    models = served_models(llm, model_name)
    batchers = {name: MicroBatcher(m, max_batch=max_batch, max_wait_s=max_wait_ms / 1000) for name, m in models.items()}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        tasks = [asyncio.create_task(b.run()) for b in batchers.values()]
        yield
        for task in tasks:
            task.cancel()

    app = FastAPI(title="sotopia-pi-lib OpenAI-compatible server", lifespan=lifespan)
    app.state.batchers = batchers
    app.state.batcher = next(iter(batchers.values()))  # the first (the only one, serving one model)

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
    async def list_models() -> dict[str, Any]:
        cards = [{"id": name, "object": "model", "created": 0, "owned_by": "sotopia-pi-lib"} for name in batchers]
        return {"object": "list", "data": cards}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> dict[str, Any]:
        if body.model not in batchers:
            served = ", ".join(repr(n) for n in batchers)
            raise WireError(
                404,
                f"model {body.model!r} does not exist; this server serves {served}",
                param="model",
                code="model_not_found",
            )
        request = to_llm_request(body)
        try:
            response = await batchers[body.model].submit(request)
        except SotopiaPiError as exc:
            raise WireError(400, str(exc)) from None
        except Exception as exc:
            raise WireError(500, f"generation failed: {type(exc).__name__}", kind="server_error") from None
        if response.error is not None:  # failed for good (see LLM): 422, which clients do not retry
            raise WireError(422, f"generation failed: {response.error}", code="generation_failed")
        return to_wire_response(response, body.model)

    return app


class FaultPlan(BaseModel):
    """Failures injected into chat requests, for tests of client retries: of every `period` requests
    (counted on arrival, whatever the model), the first ones are answered with `statuses` in turn,
    as OpenAI's API answers when rate-limited (429) or failing (500)."""

    model_config = ConfigDict(extra="forbid")

    period: int = Field(4, ge=1)
    statuses: tuple[int, ...] = (429, 500)
    retry_after_s: float = Field(0.0, ge=0.0, description="the Retry-After header of a 429")


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
                if status == 429:
                    response.headers["retry-after"] = str(plan.retry_after_s)
                return response
        return await call_next(request)

    app.state.injected = injected
    return injected
