"""build_llm and CachedLLM: spec checks, lazy imports, and the cache in front of a real model."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from sotopia_pi_lib.errors import BackendError, ConfigError
from sotopia_pi_lib.llm.base import LLM, WrappedLLM
from sotopia_pi_lib.llm.cache import ResponseCache
from sotopia_pi_lib.llm.registry import CachedLLM, backend_class, build_llm, check_spec, parse_spec
from sotopia_pi_lib.llm.types import LLMRequest, LLMResponse, Message, ModelSpec, SamplingParams
from sotopia_pi_lib.paths import project_root

ACTION = {
    "type": "object",
    "properties": {
        "action_type": {"enum": ["none", "speak", "leave"]},
        "argument": {"type": "string", "maxLength": 30},
    },
    "required": ["action_type", "argument"],
    "additionalProperties": False,
}
EMBEDDED = ModelSpec(backend="hf", model="embedded")


def requests(n: int, max_tokens: int = 24, schema: bool = True) -> list[LLMRequest]:
    """n distinct requests: half schema-constrained actions, half free text, sampled with their own seeds."""
    return [
        LLMRequest(
            messages=(Message(role="user", content=f"You are at a market, turn {i}. What do you do?"),),
            json_schema=ACTION if schema and i % 2 == 0 else None,
            sampling=SamplingParams(temperature=1.0, max_tokens=max_tokens),
            seed=i,
        )
        for i in range(n)
    ]


# -- specs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["hff", "transformers", None, ""])
def test_unknown_backend_lists_the_known_ones(backend):
    with pytest.raises(ConfigError, match="unknown backend .*; known backends: hf, openai, vllm"):
        build_llm({"backend": backend, "model": "embedded"}, cache=None)


def test_invalid_spec_names_the_key():
    with pytest.raises(ConfigError, match="temperature: Extra inputs are not permitted"):
        parse_spec({"backend": "hf", "model": "embedded", "temperature": 0.5})
    with pytest.raises(ConfigError, match="a model spec must be a mapping"):
        parse_spec("hf:embedded")


def test_unknown_hf_model_says_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        build_llm({"backend": "hf", "model": "./no/such/model"}, cache=None)
    message = str(err.value)
    assert f"tried {tmp_path}/no/such/model, {project_root()}/no/such/model" in message
    assert "not a Hugging Face hub id" in message and "known models: embedded" in message


def test_folder_without_config_and_missing_adapter(tmp_path):
    with pytest.raises(ConfigError, match=f"model {tmp_path} has no config.json"):
        check_spec(ModelSpec(backend="hf", model=str(tmp_path)))
    with pytest.raises(ConfigError, match="adapter '/nonexistent/adapter' not found"):
        check_spec(ModelSpec(backend="vllm", model="embedded", adapter="/nonexistent/adapter"))


def test_hub_ids_pass_unless_offline_and_uncached(monkeypatch):
    spec = ModelSpec(backend="hf", model="mistralai/Mistral-7B-Instruct-v0.1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert check_spec(spec) == spec
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache and HF_HUB_OFFLINE is set"):
        check_spec(spec)


def test_relative_model_path_is_found_under_the_project_root(tmp_path, monkeypatch, embedded_model_dir):
    monkeypatch.chdir(tmp_path)  # e.g. a notebook's folder
    relative = embedded_model_dir.relative_to(project_root())
    assert Path(check_spec(ModelSpec(backend="hf", model=str(relative))).model) == embedded_model_dir


def test_openai_spec_is_not_a_local_path():
    spec = ModelSpec(backend="openai", model="gpt-4o-2024-08-06")
    assert check_spec(spec) == spec


def test_importing_the_package_imports_no_backend():
    code = (
        "import sys, sotopia_pi_lib.llm as m; m.build_llm, m.ResponseCache, m.CachedLLM, m.check_schema; "
        "print(sorted({'torch', 'transformers', 'openai', 'vllm', 'xgrammar'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the openai backend: no key anywhere, failures not cached --------------------------------------


def test_openai_key_never_reaches_the_cache(tmp_path, monkeypatch):
    secret = "sk-fake-9c8b7a6d5e4f3a2b1c0d"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    cache = ResponseCache(tmp_path / "c.sqlite")
    spec = {"backend": "openai", "model": "gpt-test", "options": {"base_url": "http://127.0.0.1:9/v1",
                                                                 "max_retries": 0, "timeout_s": 5}}  # fmt: skip
    llm = build_llm(spec, cache=cache)
    with pytest.raises(BackendError, match=r"cannot ask http://127.0.0.1:9/v1/models") as unreachable:
        llm.generate(requests(2))  # nothing listens on port 9, so nothing says what it would serve
    assert secret not in str(unreachable.value) and cache.count() == 0
    remote = build_llm({**spec, "options": {"base_url": "https://api.openai.com/v1"}}, cache=cache)
    cache.put_many(remote.identity(), [("k", LLMResponse(text="hello"))])
    assert cache.count(remote.identity()) == 1
    llm.close()
    remote.close()
    cache.close()
    assert all(secret.encode() not in p.read_bytes() for p in tmp_path.iterdir())


# -- a real model behind the cache ----------------------------------------------------------------


class Counting(WrappedLLM):
    """Delegates to a real model and records what reaches it."""

    def __init__(self, inner: LLM) -> None:
        super().__init__(inner)
        self.calls: list = []

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        self.calls.append(list(requests))
        return self.inner.generate(requests, progress=progress)

    def choice_logprobs(self, prompts, choices):
        self.calls.append(list(prompts))
        return self.inner.choice_logprobs(prompts, choices)


@pytest.fixture(scope="module")
def hf_model(embedded_model_dir):
    model = backend_class("hf")(EMBEDDED)
    yield model
    model.close()


def forbid_loading_weights(monkeypatch) -> None:
    from transformers import PreTrainedModel

    def refuse(cls, *args, **kwargs):
        raise AssertionError("a cached run loaded model weights")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))


@pytest.mark.model
def test_cached_rerun_is_equal_fast_and_needs_no_model(tmp_path, monkeypatch, embedded_model_dir):
    path, batch = tmp_path / "responses.sqlite", requests(4)
    llm = build_llm(EMBEDDED, cache=ResponseCache(path))
    start = time.perf_counter()
    first = llm.generate(batch)
    uncached_s = time.perf_counter() - start
    assert all(r.ok and not r.cached for r in first)
    assert all(r.parsed["action_type"] in {"none", "speak", "leave"} for r in first[::2])
    llm.close()

    forbid_loading_weights(monkeypatch)
    cache = ResponseCache(path)
    rerun = build_llm(EMBEDDED, cache=cache)  # a fresh model object, as in a re-run notebook
    start = time.perf_counter()
    second = rerun.generate(batch)
    cached_s = time.perf_counter() - start
    assert [r.model_copy(update={"cached": False}) for r in second] == first
    assert all(r.cached for r in second)
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (4, 0)
    assert stats.saved_completion_tokens == sum(r.completion_tokens for r in first) > 0
    print(
        f"\nbatch of 4: uncached {uncached_s:.3f} s, cached {cached_s * 1000:.1f} ms, x{uncached_s / cached_s:.0f}"
    )
    assert cached_s * 50 < uncached_s


@pytest.mark.model
def test_only_misses_reach_the_model_in_one_call_in_order(tmp_path, hf_model):
    inner = Counting(hf_model)
    llm, batch = (
        CachedLLM(inner, ResponseCache(tmp_path / "c.sqlite")),
        requests(4, max_tokens=6, schema=False),
    )
    first = llm.generate(batch[:2])
    mixed = llm.generate([batch[3], batch[0], batch[2], batch[1], batch[3]])
    assert [len(c) for c in inner.calls] == [2, 1 + 1]
    assert inner.calls[1] == [batch[3], batch[2]]  # misses only, in request order, duplicate once
    assert [r.cached for r in mixed] == [False, True, False, True, True]
    assert mixed[1] == first[0].model_copy(update={"cached": True}) and mixed[4].text == mixed[0].text
    llm.generate(batch[:4])
    assert len(inner.calls) == 2  # a fully cached batch never reaches the model
    assert llm.identity() == hf_model.identity()


@pytest.mark.model
def test_invalid_schema_fails_before_any_generation(tmp_path, hf_model):
    inner, cache = Counting(hf_model), ResponseCache(tmp_path / "c.sqlite")
    bad = requests(1)[0].model_copy(
        update={"json_schema": {"type": "object", "properties": {"a": {"type": "int"}}}}
    )
    for llm in (CachedLLM(inner, cache), CachedLLM(inner, None)):
        with pytest.raises(ConfigError, match="request 2: invalid json_schema at properties/a/type"):
            llm.generate([*requests(2), bad])
    assert inner.calls == [] and cache.count() == 0 and cache.stats().misses == 0


@pytest.mark.model
def test_choice_logprobs_are_cached(tmp_path, hf_model):
    inner = Counting(hf_model)
    llm = CachedLLM(inner, ResponseCache(tmp_path / "c.sqlite"))
    prompts = [(Message(role="user", content=f"Question {i}: 2+{i}=? A) {2 + i} B) 0 C) 1 D) 9. Answer:"),)
               for i in range(3)]  # fmt: skip
    first = llm.choice_logprobs(prompts[:2], ["A", "B", "C", "D"])
    both = llm.choice_logprobs(prompts, ["A", "B", "C", "D"])
    assert both[:2] == first and set(both[2]) == {"A", "B", "C", "D"}
    assert inner.calls == [prompts[:2], prompts[2:]]
    assert llm.choice_logprobs(prompts, ["A", "B", "C", "D"]) == both and len(inner.calls) == 2
