"""The local OpenAI-compatible server wrapping the real hf backend (embedded model), driven on loopback
by the official `openai` client and by the library's own openai backend."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from sotopia_pi_lib.errors import ConfigError
from sotopia_pi_lib.llm.hf import HFModel
from sotopia_pi_lib.llm.openai_backend import OpenAIModel
from sotopia_pi_lib.llm.server import BackgroundServer, FaultPlan, create_app, inject_faults
from sotopia_pi_lib.llm.types import LLMRequest, Message, ModelSpec, SamplingParams
from sotopia_pi_lib.llm.usage import MeteredLLM
from sotopia_pi_lib.serve import main, parse_model_spec, parse_served_models
from sotopia_pi_lib.sim import ACTION_TYPES, action_schema

pytestmark = pytest.mark.model
KEY = "sk-local-9d41c07be2a35f68-SECRET"
SCHEMA = action_schema(ACTION_TYPES, max_argument_chars=60)
GREEDY = SamplingParams(temperature=0.0, max_tokens=40)
PROMPTS = [
    "You meet your neighbour Bob in the hallway. What do you do?",
    "Your friend asks to borrow money again. Reply with your next action.",
    "You are negotiating the price of a used bike. Make an offer.",
]


def messages(prompt: str) -> tuple[Message, ...]:
    return (
        Message(role="system", content="You are Alice, a helpful person."),
        Message(role="user", content=prompt),
    )


@pytest.fixture(scope="module")
def hf(embedded_model_dir: Path) -> Iterator[HFModel]:
    # float32: the server batches concurrent requests, and the outputs must equal the direct ones
    # token for token (bf16 rounding differs with the batch's make-up)
    model = HFModel(ModelSpec(backend="hf", model="embedded", options={"dtype": "float32"}))
    yield model
    model.close()


@pytest.fixture(scope="module")
def server(hf: HFModel) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(hf, model_name="embedded", api_key=KEY, max_wait_ms=300)) as srv:
        yield srv


def post(srv: BackgroundServer, body: Any, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, str):  # raw text, sent as JSON
        headers["Content-Type"] = "application/json"
        return httpx.post(f"{srv.base_url}/chat/completions", headers=headers, content=body, timeout=120)
    return httpx.post(f"{srv.base_url}/chat/completions", headers=headers, json=body, timeout=120)


def test_openai_client_gets_what_the_hf_backend_gives(hf: HFModel, server: BackgroundServer) -> None:
    [direct] = hf.generate(
        [LLMRequest(messages=messages(PROMPTS[0]), json_schema=SCHEMA, sampling=GREEDY, seed=1)]
    )
    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    reply = client.chat.completions.create(
        model="embedded",
        messages=[m.model_dump() for m in messages(PROMPTS[0])],
        temperature=0,
        max_tokens=40,
        seed=1,
        response_format={"type": "json_schema", "json_schema": {"name": "action", "schema": SCHEMA}},
    )
    assert direct.ok and direct.parsed is not None
    assert reply.choices[0].message.content == direct.text
    assert json.loads(reply.choices[0].message.content) == direct.parsed
    assert reply.choices[0].finish_reason == direct.finish_reason
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        direct.prompt_tokens,
        direct.completion_tokens,
    )


def test_openai_backend_through_the_server_matches_hf(
    hf: HFModel, server: BackgroundServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_SERVER_KEY", KEY)
    requests = [
        LLMRequest(messages=messages(p), json_schema=SCHEMA, sampling=GREEDY, seed=7) for p in PROMPTS[1:]
    ]
    options = {
        "base_url": server.base_url,
        "api_key_env": "LOCAL_SERVER_KEY",
        "max_concurrency": 1,
        "structured": "json_schema",
    }
    remote = OpenAIModel(ModelSpec(backend="openai", model="embedded", options=options))
    via_server = remote.generate(requests)
    direct = [hf.generate([r])[0] for r in requests]  # one at a time, like the server saw them
    assert [r.parsed for r in via_server] == [r.parsed for r in direct]
    assert all(r.ok and r.parsed is not None for r in via_server)
    assert remote.usage_summary().completion_tokens == sum(r.completion_tokens for r in direct)
    remote.close()


def test_concurrent_requests_are_batched_into_one_generate_call(
    server: BackgroundServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_SERVER_KEY", KEY)
    batcher = server.server.config.app.state.batcher
    before = len(batcher.batch_sizes)
    options = {"base_url": server.base_url, "api_key_env": "LOCAL_SERVER_KEY", "max_concurrency": 8}
    remote = OpenAIModel(ModelSpec(backend="openai", model="embedded", options=options))
    requests = [
        LLMRequest(messages=messages(p), json_schema=SCHEMA, sampling=GREEDY) for p in PROMPTS[:2] * 2
    ]
    responses = remote.generate(requests)
    assert all(r.ok and r.parsed["action_type"] in ACTION_TYPES for r in responses)
    sizes = batcher.batch_sizes[before:]
    assert sum(sizes) == len(requests) and max(sizes) > 1  # 4 requests in fewer than 4 generate calls
    assert responses[0].parsed == responses[2].parsed  # same prompt, greedy: same answer in any batch
    remote.close()


def test_a_failed_generation_is_a_422_that_is_not_retried(
    server: BackgroundServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_SERVER_KEY", KEY)
    options = {"base_url": server.base_url, "api_key_env": "LOCAL_SERVER_KEY", "repair_attempts": 0}
    remote = OpenAIModel(ModelSpec(backend="openai", model="embedded", options=options))
    tiny = SamplingParams(temperature=0.0, max_tokens=3)  # too few tokens to finish the JSON object
    ok, failed = remote.generate(
        [
            LLMRequest(messages=messages(PROMPTS[0]), sampling=SamplingParams(temperature=0.0, max_tokens=8)),
            LLMRequest(messages=messages(PROMPTS[0]), json_schema=SCHEMA, sampling=tiny),
        ]
    )
    assert ok.ok and ok.text
    assert not failed.ok and "HTTP 422" in failed.error and "generation failed" in failed.error
    assert remote.usage_summary().retries == 0
    remote.close()


def _assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param
    return error


def test_malformed_requests_get_400_with_an_openai_error_body(server: BackgroundServer) -> None:
    chat = [{"role": "user", "content": "hi"}]
    assert "not valid JSON" in _assert_error(post(server, "{not json"), 400)["message"]
    _assert_error(post(server, {"model": "embedded"}), 400, "messages")
    _assert_error(post(server, {"model": "embedded", "messages": chat, "n": 2}), 400, "n")
    _assert_error(post(server, {"model": "embedded", "messages": chat, "temperature": 5}), 400, "temperature")
    _assert_error(post(server, {"model": "embedded", "messages": chat, "stream": True}), 400, "stream")
    _assert_error(post(server, {"model": "embedded", "messages": [{"role": "tool", "content": "x"}]}), 400)
    bad_schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}
    error = _assert_error(
        post(server, {"model": "embedded", "messages": chat, "response_format": bad_schema}), 400
    )
    assert "json_schema" in error["message"]
    assert _assert_error(post(server, {"model": "gpt-4", "messages": chat}), 404)["code"] == "model_not_found"


def test_a_wrong_or_missing_key_gets_401(server: BackgroundServer) -> None:
    body = {"model": "embedded", "messages": [{"role": "user", "content": "hi"}]}
    assert _assert_error(post(server, body, key="sk-wrong"), 401)["code"] == "invalid_api_key"
    _assert_error(post(server, body, key=None), 401)
    _assert_error(httpx.get(f"{server.base_url}/models"), 401)
    models = httpx.get(f"{server.base_url}/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert [m["id"] for m in models["data"]] == ["embedded"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0).models.list()


def test_the_key_never_appears_in_logs(server: BackgroundServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"model": "embedded", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    assert post(server, body).status_code == 200
    assert post(server, body, key=KEY[:-3] + "xyz").status_code == 401
    assert caplog.records and KEY not in caplog.text and KEY[-12:] not in caplog.text


def test_several_served_names_share_one_engine_and_inject_faults_the_client_retries(
    hf: HFModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One server, a model per served name (here all variants of the one loaded base, as the rehearsal
    serves the embedded model as expert and judge); with failures injected, the library's openai
    backend retries each 429 and 500 and every request succeeds, counted once on both sides."""
    served = {name: MeteredLLM(HFModel(hf.spec, base=hf.base), name) for name in ("expert", "judge")}
    with BackgroundServer(create_app(served)) as srv:
        assert [m["id"] for m in httpx.get(f"{srv.base_url}/models").json()["data"]] == ["expert", "judge"]
        missing = httpx.post(f"{srv.base_url}/chat/completions", json={"model": "partner", "messages": [
            {"role": "user", "content": "hi"}]})  # fmt: skip
        assert missing.status_code == 404 and "'expert', 'judge'" in missing.json()["error"]["message"]
    app = create_app(served, max_wait_ms=50)
    injected = inject_faults(app, FaultPlan(period=3))
    loads = hf.base.loads
    with BackgroundServer(app) as srv:
        options = {"base_url": srv.base_url, "max_concurrency": 2, "structured": "json_schema"}
        clients = {n: MeteredLLM(OpenAIModel(ModelSpec(backend="openai", model=n, options=options)), n) for n in served}
        for i, client in enumerate(clients.values()):
            requests = [LLMRequest(messages=messages(p), json_schema=SCHEMA, sampling=GREEDY, seed=i) for p in PROMPTS]
            assert all(r.ok for r in client.generate(requests))
    assert injected[429] >= 1 and injected[500] >= 1 and hf.base.loads == loads  # no second copy loaded
    for name in served:
        client, server_side = clients[name].usage, served[name].usage
        assert client.requests == server_side.requests == len(PROMPTS) and client.failed == 0
        assert (client.prompt_tokens, client.completion_tokens) == (server_side.prompt_tokens, server_side.completion_tokens)
        clients[name].close()
    with pytest.raises(ConfigError, match="mapping of served name"):
        parse_served_models("[embedded]")
    assert parse_served_models("{expert: embedded, judge: 'hf:models/x'}")["judge"].model == "models/x"


def test_model_spec_argument() -> None:
    assert parse_model_spec("embedded") == ModelSpec(backend="hf", model="embedded")
    assert parse_model_spec("hf:models/x") == ModelSpec(backend="hf", model="models/x")
    spec = parse_model_spec('{"backend": "openai", "model": "gpt-4", "options": {"max_retries": 1}}')
    assert spec.options == {"max_retries": 1}
    assert parse_model_spec("{backend: hf, model: embedded, adapter: a/b}").adapter == "a/b"
    with pytest.raises(ConfigError, match="--model: backend"):
        parse_model_spec("{backend: tgi, model: x}")
    with pytest.raises(ConfigError, match="--model"):
        parse_model_spec("[1, 2]")


def test_cli_help_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sotopia_pi_lib.serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "--model SPEC" in done.stdout and "127.0.0.1" in done.stdout
    assert main(["--model", "embedded", "--api-key-env", "SOTOPIA_TEST_UNSET_KEY"]) == 2
    assert "SOTOPIA_TEST_UNSET_KEY" in capsys.readouterr().err


def test_cli_serves_on_loopback() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "CLI_TEST_KEY": KEY}
    cmd = [
        sys.executable,
        "-m",
        "sotopia_pi_lib.serve",
        "--model",
        "embedded",
        "--port",
        str(port),
        "--api-key-env",
        "CLI_TEST_KEY",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert models.json()["data"][0]["id"] == "embedded"
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "Serving hf:embedded" in output and KEY not in output
