"""The OpenAI-compatible server's limits and identity, driven over loopback with a scripted model (no
weights): caps on body, max_tokens and schema, a schema compiled alone before batching, a bounded
queue, a fresh seed per sampled request, and /v1/models naming what is served so caches never mix."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

from sotopia_pi_lib.errors import ConfigError
from sotopia_pi_lib.llm.base import LLM
from sotopia_pi_lib.llm.cache import ResponseCache, model_hash
from sotopia_pi_lib.llm.registry import build_llm
from sotopia_pi_lib.llm.server import BackgroundServer, ServerLimits, create_app, exposure_warning
from sotopia_pi_lib.llm.types import LLMRequest, LLMResponse, Message, ModelSpec, SamplingParams


class Scripted(LLM):
    """Answers `<tag> seed=<seed>`; fails a whole batch that holds a `poison` request, as a backend does
    when one schema in the batch cannot be compiled; `gate` (if set) holds generate() until released."""

    def __init__(self, tag: str = "A", gate: threading.Event | None = None) -> None:
        self.spec = ModelSpec(backend="hf", model="scripted")
        self.tag, self.gate, self.batches = tag, gate, []
        self.entered = threading.Event()

    def identity(self) -> dict[str, Any]:
        return {"backend": "scripted", "adapter_sha256": self.tag}

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append(len(requests))
        if any("poison" in r.messages[-1].content for r in requests):
            raise ConfigError("json_schema cannot be compiled for constrained decoding")
        return [LLMResponse(text=f"{self.tag} seed={r.seed}") for r in requests]


def chat(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


def post(srv: BackgroundServer, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{srv.base_url}/chat/completions", json=body, timeout=30, **kw)


def test_caps_on_body_max_tokens_and_schema():
    limits = ServerLimits(max_body_bytes=4096, max_tokens=256, max_schema_bytes=512, max_schema_depth=6)
    with BackgroundServer(create_app(Scripted(), model_name="m", limits=limits)) as srv:
        assert post(srv, chat("x" * 5000)).status_code == 413
        chunks = (b'{"model": "m", "messages": [{"role": "user", "content": "' + b"y" * 3000 + b'"}]}',
                  b" " * 3000)
        sent_chunked = httpx.post(f"{srv.base_url}/chat/completions", content=iter(chunks), timeout=30,
                                  headers={"content-type": "application/json"})
        assert sent_chunked.status_code == 413  # no Content-Length: counted as it arrives
        too_many = post(srv, chat(max_tokens=1000)).json()["error"]
        assert too_many["param"] == "max_tokens" and "256" in too_many["message"]
        big = {"type": "object", "properties": {"a": {"enum": [f"value-{i}" for i in range(100)]}}}
        deep: dict[str, Any] = {"type": "string"}
        for _ in range(6):
            deep = {"type": "object", "properties": {"a": deep}}
        for schema in (big, deep):
            fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
            answer = post(srv, chat(response_format=fmt))
            assert answer.status_code == 400 and answer.json()["error"]["param"] == "response_format"
        assert post(srv, chat(max_tokens=200)).status_code == 200


def test_a_bad_schema_fails_only_its_own_request():
    """`\\b` passes the schema checker but xgrammar cannot compile it: a 400 before batching. A request
    that breaks a whole batch anyway fails alone: the batch is retried one request at a time."""
    llm = Scripted()
    with BackgroundServer(create_app(llm, model_name="m", max_wait_ms=300)) as srv:
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"a": {"type": "string", "pattern": "\\bword\\b"}}}}}
        assert post(srv, chat(response_format=fmt)).json()["error"]["param"] == "response_format"
        results: dict[str, httpx.Response] = {}
        threads = [threading.Thread(target=lambda c=c: results.__setitem__(c, post(srv, chat(c))))
                   for c in ("poison", "fine-1", "fine-2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results["fine-1"].status_code == results["fine-2"].status_code == 200
    assert results["poison"].status_code == 400
    assert max(llm.batches) > 1  # they did share a batch, which failed, and were then tried alone


def test_a_full_queue_answers_429_at_once():
    gate = threading.Event()
    llm = Scripted(gate=gate)
    with BackgroundServer(create_app(llm, model_name="m", limits=ServerLimits(max_queue=1))) as srv:
        first = threading.Thread(target=post, args=(srv, chat("first")))
        first.start()
        assert llm.entered.wait(10)  # the first request is in generate()
        queued = threading.Thread(target=post, args=(srv, chat("second")))
        queued.start()
        batcher = srv.server.config.app.state.batcher
        for _ in range(200):
            if batcher.queue.qsize() == 1:
                break
            time.sleep(0.01)
        started = time.monotonic()
        busy = post(srv, chat("third"))
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "queue_full" and time.monotonic() - started < 2
        gate.set()
        first.join()
        queued.join()


def test_sampled_requests_without_a_seed_get_fresh_seeds():
    with BackgroundServer(create_app(Scripted(), model_name="m")) as srv:
        sampled = {post(srv, chat(temperature=1.0)).json()["choices"][0]["message"]["content"] for _ in range(4)}
        greedy = post(srv, chat(temperature=0.0)).json()["choices"][0]["message"]["content"]
        seeded = post(srv, chat(temperature=1.0, seed=7)).json()["choices"][0]["message"]["content"]
    assert len(sampled) == 4  # before: all "A seed=0", so every repeat came back identical
    assert greedy == "A seed=0" and seeded == "A seed=7"


def test_models_reports_what_is_served_and_client_caches_keep_servers_apart(tmp_path):
    """Two models served one after the other under one name on one port: the client's response cache
    must not replay the first one's answers for the second (its identity has the served hash)."""
    cache = ResponseCache(tmp_path / "c.sqlite")
    request = LLMRequest(messages=(Message(role="user", content="hello"),),
                         sampling=SamplingParams(temperature=0.0, max_tokens=8))
    texts, port = [], 0
    for tag in ("A", "B"):
        llm = Scripted(tag)
        with BackgroundServer(create_app(llm, model_name="m"), port=port) as srv:
            port = srv.port
            card = httpx.get(f"{srv.base_url}/models", timeout=30).json()["data"][0]
            assert card["id"] == "m" and card["identity_sha256"] == model_hash(llm.identity())
            client = build_llm({"backend": "openai", "model": "m", "options": {"base_url": srv.base_url}},
                               cache=cache)
            texts.append(client.generate([request])[0].text)
            assert client.identity()["served"] == {"identity_sha256": model_hash(llm.identity())}
            client.close()
    cache.close()
    assert texts == ["A seed=0", "B seed=0"]


def test_serving_beyond_loopback_without_a_key_warns():
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("localhost", None) is None
    assert exposure_warning("0.0.0.0", "k") is None
    assert "without an API key" in exposure_warning("0.0.0.0", None)
    assert json.dumps(exposure_warning("::", None))
