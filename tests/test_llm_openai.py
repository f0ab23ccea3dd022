"""The openai backend against fault-injecting OpenAI-compatible servers on loopback (no internet).

Each request's last user message tells the test server how to behave on successive attempts, e.g.
`500,500` fails twice then answers; `hang` never answers in time; `bad-json` answers prose first;
`quota`, `401`, `403` and `404` are permanent errors. Injected transient errors carry `retry-after-ms: 5`,
which the openai SDK honours, so retries cost milliseconds here.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sotopia_pi_lib.errors import ConfigError
from sotopia_pi_lib.llm.cache import ResponseCache
from sotopia_pi_lib.llm.json_output import derive_seed
from sotopia_pi_lib.llm.openai_backend import OpenAIModel, PermanentAPIError
from sotopia_pi_lib.llm.pricing import DEFAULT_PRICES, find_price, price_table
from sotopia_pi_lib.llm.registry import build_llm
from sotopia_pi_lib.llm.server import BackgroundServer
from sotopia_pi_lib.llm.types import LLMRequest, Message, ModelSpec, SamplingParams

KEY = "sk-test-5f2c9a81d0e4b7a3-SECRET"
SCHEMA = {
    "type": "object",
    "properties": {"action_type": {"enum": ["none", "speak", "leave"]}, "argument": {"type": "string"}},
    "required": ["action_type", "argument"],
}
GOOD = {"action_type": "speak", "argument": "hello"}
PERMANENT = {"quota": (429, "insufficient_quota"), "401": (401, "invalid_api_key"), "403": (403, None),
             "404": (404, "model_not_found")}


def fault_app(require_key: str | None = None) -> FastAPI:
    """A chat-completions endpoint whose behaviour each request script chooses (see module doc)."""
    app = FastAPI()
    app.state.attempts = Counter()
    app.state.times = defaultdict(list)
    app.state.bodies = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        if require_key and request.headers.get("authorization") != f"Bearer {require_key}":
            given = request.headers.get("authorization", "")[-30:]
            body = {
                "message": f"Incorrect API key provided: {given}",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
            return JSONResponse({"error": body}, status_code=401)
        body = await request.json()
        app.state.bodies.append(body)
        script = body["messages"][-1]["content"].split("\n")[0]
        if script.startswith("bad-json") and len(body["messages"]) > 1:
            script = "bad-json-repaired"  # the repair turn (assistant reply + user correction) arrived
        attempt = app.state.attempts[script]
        app.state.attempts[script] += 1
        app.state.times[script].append(time.monotonic())
        steps = script.split(",")
        step = steps[attempt] if attempt < len(steps) else "ok"
        if step == "hang":
            await asyncio.sleep(2.0)
        if step == "slow":
            await asyncio.sleep(0.3)
        if step in PERMANENT:
            status, code = PERMANENT[step]
            error = {"message": f"injected {step}", "type": "invalid_request_error", "code": code}
            return JSONResponse({"error": error}, status_code=status)
        if step.startswith("wait-"):  # `wait-ms`, `wait-date`: a 429 saying when to come back, in that form
            form = step.removeprefix("wait-")
            headers = ({"retry-after-ms": "400"} if form == "ms" else
                       {"retry-after": email.utils.formatdate(time.time() + 2, usegmt=True)})
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers=headers)
        if step.isdigit():
            return JSONResponse(
                {"error": {"message": f"injected {step}", "type": "server_error"}},
                status_code=int(step),
                headers={"retry-after-ms": "5"},
            )
        rf = body.get("response_format") or {}
        if step == "no-json-schema" and rf.get("type") == "json_schema":
            return JSONResponse(
                {
                    "error": {
                        "message": "Invalid parameter: 'response_format' of type "
                        "'json_schema' is not supported with this model.",
                        "type": "invalid_request_error",
                        "param": "response_format",
                    }
                },
                status_code=400,
            )
        content = "Sure! Here you go." if step == "bad-json" else json.dumps(GOOD) if rf else f"echo {script}"
        return completion(content, body["model"])

    return app


def completion(content: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 250, "total_tokens": 1250},
    }


@pytest.fixture()
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer(fault_app()) as srv:
        yield srv


def model(srv: BackgroundServer, **options: Any) -> OpenAIModel:
    # a 1 s timeout: `hang` (2 s) always times out, and an answer delayed by a busy machine does not
    opts = {"base_url": srv.base_url, "timeout_s": 1.0, "max_retries": 2, **options}
    return OpenAIModel(ModelSpec(backend="openai", model="test-model", options=opts))


def req(script: str, schema: dict | None = None, **kw: Any) -> LLMRequest:
    return LLMRequest(messages=(Message(role="user", content=script),), json_schema=schema, **kw)


def test_transient_errors_are_retried_and_a_failure_stays_with_its_request(server: BackgroundServer) -> None:
    llm = model(server)
    scripts = ["ok", "500,500", "429", "503,503,503,503", "hang,hang,hang", "502"]
    responses = llm.generate([req(s) for s in scripts])
    by_script = dict(zip(scripts, responses, strict=True))
    for script in ("ok", "500,500", "429", "502"):
        assert by_script[script].ok and by_script[script].text == f"echo {script}"
    assert server.server.config.app.state.attempts["500,500"] == 3  # two failures + the answer
    assert (
        "HTTP 503" in by_script["503,503,503,503"].error
        and "after 3 attempts" in by_script["503,503,503,503"].error
    )
    assert "Timeout" in by_script["hang,hang,hang"].error
    assert all(by_script[s].finish_reason == "error" for s in ("503,503,503,503", "hang,hang,hang"))
    usage = llm.usage_summary()
    assert (usage.requests, usage.failures, usage.api_calls) == (6, 2, 4)
    assert usage.retries == 2 + 1 + 2 + 2 + 1
    llm.close()


def test_invalid_json_is_repaired_by_sending_the_error_back(server: BackgroundServer) -> None:
    llm = model(server, structured="json_schema")
    [response] = llm.generate([req("bad-json", SCHEMA)])
    assert response.ok and response.parsed == GOOD
    assert response.prompt_tokens == 2000  # both attempts are counted (and billed)
    repair = server.server.config.app.state.bodies[-1]["messages"]
    assert [m["role"] for m in repair] == ["user", "assistant", "user"]
    assert "not JSON" in repair[-1]["content"]
    assert llm.usage_summary().repairs == 1


def test_no_repair_attempts_left_means_that_request_fails(server: BackgroundServer) -> None:
    llm = model(server, structured="json_schema", repair_attempts=0)
    bad, good = llm.generate([req("bad-json", SCHEMA), req("fine", SCHEMA)])
    assert not bad.ok and "no valid JSON" in bad.error and bad.text == "Sure! Here you go."
    assert good.ok and good.parsed == GOOD


def test_auto_falls_back_to_json_mode_when_json_schema_is_rejected(server: BackgroundServer) -> None:
    llm = model(server)  # structured: auto
    [response] = llm.generate([req("no-json-schema", SCHEMA)])
    assert response.ok and response.parsed == GOOD
    last = server.server.config.app.state.bodies[-1]
    assert last["response_format"] == {"type": "json_object"}
    assert json.dumps(SCHEMA) in last["messages"][-1]["content"]  # the schema travels in the prompt


def test_seed_sampling_and_json_schema_are_sent(server: BackgroundServer) -> None:
    llm = model(server)
    sampling = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=33)
    llm.generate([req("a", SCHEMA, seed=5, sampling=sampling), req("b", seed=5, sample_index=1)])
    first, second = sorted(server.server.config.app.state.bodies, key=lambda b: b["messages"][0]["content"])
    assert (first["seed"], first["temperature"], first["top_p"], first["max_tokens"]) == (5, 0.7, 0.9, 33)
    assert first["response_format"]["json_schema"]["schema"] == SCHEMA
    assert second["seed"] == derive_seed(5, 1) != 5 and "response_format" not in second


def test_sample_index_gives_distinct_seeds() -> None:
    seeds = {derive_seed(seed, index) for seed in range(20) for index in range(20)}
    assert len(seeds) == 400 and derive_seed(7, 0) == 7


def test_generate_works_inside_a_running_event_loop(server: BackgroundServer) -> None:
    llm = model(server)

    async def notebook_cell() -> list[str]:  # Jupyter runs cells inside a live loop
        return [r.text for r in llm.generate([req("x"), req("y")])]

    assert asyncio.run(notebook_cell()) == ["echo x", "echo y"]


def test_invalid_schema_fails_before_any_request(server: BackgroundServer) -> None:
    llm = model(server)
    with pytest.raises(ConfigError, match="request 1: invalid json_schema"):
        llm.generate([req("a"), req("b", {"type": "objekt"})])
    assert server.server.config.app.state.bodies == []


def test_missing_key_for_a_remote_endpoint_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIModel(ModelSpec(backend="openai", model="gpt-4"))
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(ConfigError, match="MY_KEY"):
        OpenAIModel(
            ModelSpec(
                backend="openai",
                model="x",
                options={"base_url": "https://example.org/v1", "api_key_env": "MY_KEY"},
            )
        )
    with pytest.raises(ConfigError, match="options.max_retries"):
        OpenAIModel(ModelSpec(backend="openai", model="x", options={"max_retries": -1}))


def test_api_key_never_reaches_logs_identity_results_or_cache(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    with BackgroundServer(fault_app(require_key=KEY)) as srv:
        opts = {"base_url": srv.base_url, "api_key_env": "TEST_OPENAI_KEY"}
        cache = ResponseCache(tmp_path / "cache.sqlite")
        llm = build_llm(ModelSpec(backend="openai", model="test-model", options=opts), cache=cache)
        ok = llm.generate([req("hello", SCHEMA), req("500")])
        monkeypatch.setenv("WRONG_KEY", KEY[:-6] + "XXXXXX")
        wrong = OpenAIModel(
            ModelSpec(backend="openai", model="m", options={**opts, "api_key_env": "WRONG_KEY"})
        )
        with pytest.raises(PermanentAPIError, match="authentication failed") as denied:
            wrong.generate([req("hello")])
        cache.close()
    assert all(r.ok for r in ok) and "$WRONG_KEY" in str(denied.value)
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert len(written) > 0
    shown = [
        caplog.text,
        json.dumps(llm.identity()),
        *(r.model_dump_json() for r in ok),
        str(denied.value),
        wrong.usage_summary().model_dump_json(),
    ]
    for secret in (KEY, KEY[-10:]):  # not even the tail a 401 message echoes
        assert all(secret not in text for text in shown)
        assert secret.encode() not in written


def test_cost_accounting_with_a_price_override(server: BackgroundServer) -> None:
    prices = {"test-model": {"input_per_1m": 2.0, "output_per_1m": 8.0}}
    llm = model(server, prices=prices)
    llm.generate([req("a"), req("b"), req("c")])
    usage = llm.usage_summary()
    assert (usage.prompt_tokens, usage.completion_tokens) == (3000, 750)
    assert usage.priced and usage.cost_usd == pytest.approx(3 * (1000 * 2.0 + 250 * 8.0) / 1e6)  # 0.012
    unpriced = model(server, max_retries=0)
    unpriced.generate([req("a")])
    assert not unpriced.usage_summary().priced and unpriced.usage_summary().cost_usd == 0.0


def test_price_table_defaults_snapshots_and_bad_overrides() -> None:
    table = price_table()
    assert find_price("gpt-4o-mini-2024-07-18", table) == DEFAULT_PRICES["gpt-4o-mini"]
    assert find_price("gpt-4-0613", table).input_per_1m == 30.0
    assert find_price("gpt-4-turbo-2024-04-09", table).output_per_1m == 30.0
    assert find_price("gpt-3.5-turbo", table).cost(1_000_000, 1_000_000) == pytest.approx(2.0)
    assert find_price("mistral-7b", table) is None
    assert price_table({"gpt-4": {"input_per_1m": 1, "output_per_1m": 2}})["gpt-4"].output_per_1m == 2
    with pytest.raises(ConfigError, match="options.prices.gpt-4"):
        price_table({"gpt-4": {"input": 1}})


def test_identity_names_the_full_endpoint_and_model_but_no_secret(server: BackgroundServer) -> None:
    identity = model(server).identity()
    assert identity == {
        "backend": "openai",
        "base_url": f"http://127.0.0.1:{server.port}/v1",
        "model": "test-model",
        "structured": "auto",
    }  # the fault server has no /v1/models, so it reports nothing about its weights
    other_path = model(server, base_url=f"http://user:pw@127.0.0.1:{server.port}/v2?key=abc").identity()
    assert other_path["base_url"] == f"http://127.0.0.1:{server.port}/v2"


def test_retry_after_in_milliseconds_and_as_a_date_is_honoured(server: BackgroundServer) -> None:
    """The SDK's own retries: `retry-after-ms: 400` waits 0.4 s, an HTTP date ~2 s ahead about that
    long (a date has whole seconds), where plain back-off would wait ~0.5 s."""
    llm = model(server, timeout_s=10.0)
    ms, date = llm.generate([req("wait-ms"), req("wait-date")])
    assert ms.ok and date.ok
    times = server.server.config.app.state.times
    assert 0.38 <= times["wait-ms"][1] - times["wait-ms"][0] < 1.5
    assert times["wait-date"][1] - times["wait-date"][0] >= 0.9
    assert llm.usage_summary().retries == 2


@pytest.mark.parametrize(("script", "message"), [
    ("quota", "insufficient_quota"), ("401", "authentication failed"), ("403", "permission denied"),
    ("404", "model not found")])
def test_permanent_errors_stop_at_the_first_and_are_not_retried(server: BackgroundServer, script: str,
                                                                 message: str) -> None:
    llm = model(server, max_retries=3)
    with pytest.raises(PermanentAPIError, match=message):
        llm.generate([req(script)] + [req(f"{script}-other-{i}") for i in range(3)])
    assert server.server.config.app.state.attempts[script] == 1  # never retried
    with pytest.raises(PermanentAPIError, match=message):  # a chained run stops the same way
        llm.generate_chained([(("x", 0), req(f"{script},{script}"))], lambda k, r: [])
    llm.close()


def test_chained_follow_ups_do_not_wait_for_a_slow_reply(server: BackgroundServer) -> None:
    """Chain `slow` takes 0.3 s; chain `quick` asks three follow-ups meanwhile, one at a time, each
    sent when the last is answered. In rounds, each round would wait for the slow reply."""
    llm = model(server)
    order: list[str] = []

    def then(key: tuple[str, int], response):
        name, step = key
        assert response.ok, response.error
        order.append(f"{name}{step}")
        return [((name, step + 1), req(f"{name}-{step + 1}"))] if name == "quick" and step < 3 else []

    llm.generate_chained([(("slow", 0), req("slow")), (("quick", 0), req("quick"))], then)
    assert order == ["quick0", "quick1", "quick2", "quick3", "slow0"]

    failed: list[str | None] = []
    llm.generate_chained([(("x", 0), req("503,503,503,503"))], lambda k, r: failed.append(r.error) or [])
    assert failed and "HTTP 503" in failed[0]  # a failure reaches `then` like an answer

    with pytest.raises(ZeroDivisionError):  # the caller's own error stops the chain and surfaces
        llm.generate_chained([(("a", 0), req("ok")), (("b", 0), req("slow"))], lambda k, r: [1 / 0])
    llm.close()
