"""How the package's requests reach the study's models on the project's server.

SOTOPIA 0.0.6 names its models from a closed list (`gpt-4`, `gpt-3.5-turbo`, ...) and sends them all
to one base URL, so the name on the wire cannot say "policy+bc" or "the judge". Each request instead
carries the `x-sotopia-pi-route` header (set by the worker per agent turn, see scripts/worker.py):
which episode, which slot (agent 0, agent 1, the judge), which turn, the episode's seed, and which
served model answers each wire name (the agent's own name and `gpt-3.5-turbo`, the name the package's
reformatting call always uses). `OfficialRouter` reads it and supplies what the package does not send:

- a seed, derived from (episode seed, slot, turn, wire name, sample), so a sampled episode replays
  identically and hits the response cache on a re-run (the package sends no seed);
- a session hint per episode, slot and wire name, so the hf backend keeps each agent's KV cache;
- max_tokens when the request has none (the package leaves it unset: "as long as the model likes");
- optionally a JSON schema (the package's own output model, tightened), a labelled departure for
  models too small to write the JSON unaided.

Every completed exchange is recorded by episode, so the episode's record holds the exact prompt the
model received for each turn.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..llm.server import ChatCompletionRequest, Routed, ServedModels, WireError, to_llm_request
from ..llm.types import LLMResponse, Message

ROUTE_HEADER = "x-sotopia-pi-route"


class Route(BaseModel):
    """What the header says about one request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    episode: str
    slot: str
    turn: int
    seed: int
    models: dict[str, str]
    max_tokens: int
    schema_name: str | None = None
    sample: int = 0


class Exchange(BaseModel):
    """One request the server answered for the package, as it received and answered it."""

    model_config = ConfigDict(frozen=True)

    slot: str
    turn: int
    wire_model: str
    served: str
    messages: tuple[Message, ...]
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cached: bool


def route_seed(route: Route, wire_model: str) -> int:
    """The request's seed: a function of everything that identifies it, nothing else."""
    key = f"{route.seed}/{route.slot}/{route.turn}/{wire_model}/{route.sample}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & 0x7FFFFFFF


def _read_route(headers: Mapping[str, str]) -> Route:
    raw = headers.get(ROUTE_HEADER)
    if raw is None:
        raise WireError(400, f"this server answers only requests carrying the {ROUTE_HEADER} header")
    try:
        return Route.model_validate_json(raw)
    except ValidationError as exc:
        raise WireError(400, f"{ROUTE_HEADER}: {exc.errors()[0]['msg']}") from None


class OfficialRouter:
    """Routes the package's requests by their header and keeps every exchange, by episode.

    `schemas` (name -> JSON schema) is filled once the worker has reported the package's output
    models; a route naming a schema that is not there decodes freely, as the package expects.
    """

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}
        self._exchanges: dict[str, list[Exchange]] = defaultdict(list)
        self._lock = threading.Lock()

    def route(self, body: ChatCompletionRequest, headers: Mapping[str, str], served: ServedModels) -> Routed:
        route = _read_route(headers)
        name = route.models.get(body.model)
        if name is None:
            raise WireError(400, f"{ROUTE_HEADER} routes {sorted(route.models)}, not {body.model!r}", param="model")
        served.check(name)
        request = to_llm_request(body)
        sampling = request.sampling
        if body.max_tokens is None and body.max_completion_tokens is None:
            sampling = sampling.model_copy(update={"max_tokens": route.max_tokens})
        request = request.model_copy(update={
            "sampling": sampling,
            "seed": route_seed(route, body.model),
            "session": f"{route.episode}/{route.slot}/{body.model}",
            "json_schema": self.schemas.get(route.schema_name) if route.schema_name else None,
        })  # fmt: skip
        return Routed(name, request, note=(route, body.model))

    def record(self, routed: Routed, response: LLMResponse) -> None:
        route, wire = routed.note
        exchange = Exchange(
            slot=route.slot, turn=route.turn, wire_model=wire, served=routed.name, messages=routed.request.messages,
            text=response.text, prompt_tokens=response.prompt_tokens, completion_tokens=response.completion_tokens,
            latency_s=response.latency_s, cached=response.cached,
        )  # fmt: skip
        with self._lock:
            self._exchanges[route.episode].append(exchange)

    def take(self, episode: str) -> list[Exchange]:
        """The exchanges of one episode, in the order they were answered (and forget them)."""
        with self._lock:
            return self._exchanges.pop(episode, [])
