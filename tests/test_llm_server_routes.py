"""Several served models on one server: the `model` field picks one, a Router can pick by anything else.

Uses a small echoing LLM (fast, no weights): what is tested is which model a request reaches, not
what a model says; tests/test_serve.py drives the real embedded model through the same app.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sotopia_pi_lib.errors import ConfigError
from sotopia_pi_lib.llm.base import LLM
from sotopia_pi_lib.llm.server import (
    ChatCompletionRequest,
    Routed,
    ServedModels,
    WireError,
    create_app,
    to_llm_request,
)
from sotopia_pi_lib.llm.types import LLMRequest, LLMResponse, ModelSpec

CHAT = [{"role": "user", "content": "hi"}]


class Echo(LLM):
    """Answers `<name>: <last message>`, and remembers every batch it was handed."""

    def __init__(self, name: str) -> None:
        self.name, self.spec, self.batches = name, ModelSpec(backend="hf", model=name), []

    def identity(self) -> dict[str, Any]:
        return {"echo": self.name}

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        self.batches.append(list(requests))
        return [LLMResponse(text=f"{self.name}: {r.messages[-1].content}", completion_tokens=1) for r in requests]


def _reply(client: TestClient, body: dict[str, Any], **headers: str) -> Any:
    return client.post("/v1/chat/completions", json=body, headers=headers)


def test_the_model_field_picks_the_served_model() -> None:
    a, b = Echo("a"), Echo("b")
    with TestClient(create_app({"policy+bc": a, "partner": b})) as client:
        first = _reply(client, {"model": "policy+bc", "messages": CHAT}).json()
        second = _reply(client, {"model": "partner", "messages": CHAT}).json()
        listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
        missing = _reply(client, {"model": "gpt-4", "messages": CHAT})
    assert first["choices"][0]["message"]["content"] == "a: hi" and first["model"] == "policy+bc"
    assert second["choices"][0]["message"]["content"] == "b: hi" and second["model"] == "partner"
    assert listed == ["policy+bc", "partner"]
    assert missing.status_code == 404 and "'policy+bc', 'partner'" in missing.json()["error"]["message"]


def test_names_over_one_model_share_its_batcher() -> None:
    shared, other = Echo("shared"), Echo("other")
    served = ServedModels({"partner": shared, "judge": shared, "policy": other})
    assert served.batchers["partner"] is served.batchers["judge"]
    assert served.batchers["policy"] is not served.batchers["partner"]
    assert len(served.distinct_batchers()) == 2


def test_one_model_needs_its_name_and_a_mapping_needs_none() -> None:
    with pytest.raises(ConfigError, match="model_name"):
        create_app(Echo("a"))
    with pytest.raises(ConfigError, match="mapping's keys"):
        create_app({"a": Echo("a")}, model_name="a")
    with pytest.raises(ConfigError, match="at least one"):
        create_app({})


class HeaderRouter:
    """Routes by a header and keeps a record of what it routed."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, str]] = []

    def route(self, body: ChatCompletionRequest, headers: Mapping[str, str], served: ServedModels) -> Routed:
        name = headers.get("x-target")
        if name is None:
            raise WireError(400, "x-target header missing")
        served.check(name)
        return Routed(name, to_llm_request(body), note=body.model)

    def record(self, routed: Routed, response: LLMResponse) -> None:
        self.records.append((routed.note, routed.name, response.text))


def test_a_router_routes_by_header_and_records_each_exchange() -> None:
    router, a, b = HeaderRouter(), Echo("a"), Echo("b")
    with TestClient(create_app({"x": a, "y": b}, router=router)) as client:
        ok = _reply(client, {"model": "gpt-4-0613", "messages": CHAT}, **{"x-target": "y"})
        bad = _reply(client, {"model": "gpt-4-0613", "messages": CHAT})
        unknown = _reply(client, {"model": "gpt-4-0613", "messages": CHAT}, **{"x-target": "z"})
    assert ok.json()["choices"][0]["message"]["content"] == "b: hi" and ok.json()["model"] == "y"
    assert bad.status_code == 400 and unknown.status_code == 404
    assert router.records == [("gpt-4-0613", "y", "b: hi")] and not a.batches
