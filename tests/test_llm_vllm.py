"""The vllm backend without a GPU: the clear failure when vLLM or CUDA is missing, the pure
conversions from requests to vLLM parameters and from vLLM outputs to responses, and, with a fake
`vllm` module, how variants share one engine: built once for five variants with their LoRA settings,
only when a request misses the cache, rebuilt when an adapter arrives later.

Generation itself needs vLLM on a CUDA GPU (bench/gpu_check.sh) and is not exercised here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from sotopia_pi_lib.errors import BackendError, ConfigError
from sotopia_pi_lib.llm import vllm_backend
from sotopia_pi_lib.llm.cache import ResponseCache
from sotopia_pi_lib.llm.json_output import derive_seed
from sotopia_pi_lib.llm.pool import EnginePool
from sotopia_pi_lib.llm.registry import CachedLLM, build_llm
from sotopia_pi_lib.llm.types import LLMRequest, Message, ModelSpec, SamplingParams
from sotopia_pi_lib.llm.vllm_backend import (
    VLLMModel,
    lora_rank,
    require_gpu,
    sampling_kwargs,
    structured_kwargs,
    to_response,
)

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def request(**kw: object) -> LLMRequest:
    messages = (Message(role="system", content="be brief"), Message(role="user", content="hi"))
    return LLMRequest(messages=messages, **kw)  # type: ignore[arg-type]


def test_missing_vllm_is_a_backend_error_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail even where it is installed
    model = VLLMModel(ModelSpec(backend="vllm", model="embedded"))  # builds nothing yet
    with pytest.raises(BackendError, match=r"needs the `vllm` package.*\.\[gpu\]"):
        model.generate([request()])


def test_bad_options_are_named_before_vllm_is_imported() -> None:
    with pytest.raises(ConfigError, match="options.gpu_memory_utilization"):
        VLLMModel(ModelSpec(backend="vllm", model="embedded", options={"gpu_memory_utilization": 2}))


def test_no_gpu_is_a_backend_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    with pytest.raises(BackendError, match="needs a CUDA GPU"):
        require_gpu()


def test_sampling_kwargs_carry_sampling_and_a_per_sample_seed() -> None:
    sampling = SamplingParams(temperature=0.0, top_p=0.5, max_tokens=17)
    assert sampling_kwargs(request(sampling=sampling, seed=3)) == {
        "n": 1,
        "temperature": 0.0,
        "top_p": 0.5,
        "max_tokens": 17,
        "seed": 3,
    }
    assert sampling_kwargs(request(seed=3, sample_index=2))["seed"] == derive_seed(3, 2) != 3


def test_structured_kwargs_follow_the_installed_vllm_api() -> None:
    current = ModuleType("sampling_params_current")
    current.StructuredOutputsParams = lambda json: ("structured", json)  # type: ignore[attr-defined]
    current.GuidedDecodingParams = lambda json: ("guided", json)  # type: ignore[attr-defined]
    old = ModuleType("sampling_params_old")
    old.GuidedDecodingParams = lambda json: ("guided", json)  # type: ignore[attr-defined]
    assert structured_kwargs(SCHEMA, current) == {"structured_outputs": ("structured", SCHEMA)}
    assert structured_kwargs(SCHEMA, old) == {"guided_decoding": ("guided", SCHEMA)}
    with pytest.raises(BackendError, match="neither"):
        structured_kwargs(SCHEMA, ModuleType("sampling_params_ancient"))


def _output(text: str, finish: str, n_tokens: int) -> SimpleNamespace:
    """The fields of vllm.RequestOutput / CompletionOutput that to_response reads."""
    completion = SimpleNamespace(text=text, finish_reason=finish, token_ids=list(range(n_tokens)))
    return SimpleNamespace(prompt_token_ids=list(range(11)), outputs=[completion])


def test_to_response_parses_validates_and_counts_tokens() -> None:
    ok = to_response(_output('{"a": 4}', "stop", 5), request(json_schema=SCHEMA), 0.25)
    assert (ok.parsed, ok.prompt_tokens, ok.completion_tokens, ok.latency_s, ok.error) == (
        {"a": 4},
        11,
        5,
        0.25,
        None,
    )
    cut = to_response(_output('{"a": ', "length", 3), request(json_schema=SCHEMA), 0.1)
    assert cut.finish_reason == "error" and "not JSON" in cut.error and "length" in cut.error
    plain = to_response(_output("hello", "length", 2), request(), 0.1)
    assert plain.ok and plain.text == "hello" and plain.finish_reason == "length" and plain.parsed is None


def test_lora_rank_rounds_the_adapter_rank_up(tmp_path: Path) -> None:
    for r, rank in ((4, 8), (8, 8), (12, 16), (64, 64)):
        (tmp_path / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": 32}))
        assert lora_rank(str(tmp_path)) == rank
    with pytest.raises(ConfigError, match="adapter_config.json"):
        lora_rank(str(tmp_path / "missing"))


class FakeTokenizer:
    """Renders a conversation as one id per message (the content's length); takes system messages."""

    chat_template = "fake"

    def apply_chat_template(self, chat, tokenize=True, add_generation_prompt=True, return_dict=False):
        if not tokenize:
            return "\n".join(m["content"] for m in chat)
        return [len(m["content"]) for m in chat]


class FakeLLM:
    """vllm.LLM as far as the backend uses it; every construction and batch is recorded."""

    built: list[dict] = []
    batches: list[list] = []

    def __init__(self, model: str, **kwargs: object) -> None:
        FakeLLM.built.append({"model": model, **kwargs})

    def get_tokenizer(self) -> FakeTokenizer:
        return FakeTokenizer()

    def generate(self, prompts, sampling_params, use_tqdm, lora_request):
        FakeLLM.batches.append(list(lora_request))
        assert len(prompts) == len(sampling_params) == len(lora_request)
        return [_output('{"a": 1}', "stop", 3) for _ in prompts]


@pytest.fixture()
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> type[FakeLLM]:
    sampling = ModuleType("vllm.sampling_params")
    sampling.SamplingParams = lambda **kw: SimpleNamespace(**kw)  # type: ignore[attr-defined]
    sampling.StructuredOutputsParams = lambda json: ("structured", json)  # type: ignore[attr-defined]
    lora = ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda name, id_, path: SimpleNamespace(name=name, id=id_, path=path)  # type: ignore[attr-defined]
    vllm = ModuleType("vllm")
    vllm.LLM = FakeLLM  # type: ignore[attr-defined]
    vllm.sampling_params = sampling  # type: ignore[attr-defined]
    for name, module in (("vllm", vllm), ("vllm.sampling_params", sampling), ("vllm.lora", ModuleType("vllm.lora")),
                         ("vllm.lora.request", lora)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(vllm_backend, "require_gpu", lambda: None)
    FakeLLM.built, FakeLLM.batches = [], []
    return FakeLLM


def _model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def _adapter(tmp_path: Path, name: str, r: int) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": 32}))
    (folder / "adapter_model.safetensors").write_bytes(name.encode())
    return folder


def test_five_variants_share_one_engine_built_with_their_lora_settings(fake_vllm, tmp_path: Path) -> None:
    base = ModelSpec(backend="vllm", model=str(_model_folder(tmp_path)))
    adapters = [None] + [_adapter(tmp_path, n, r) for n, r in (("sr", 8), ("bc", 8), ("bc_sr", 16), ("extra", 4))]
    pool = EnginePool()
    variants = [build_llm(base.model_copy(update={"adapter": a and str(a)}), cache=None, pool=pool) for a in adapters]
    assert fake_vllm.built == []  # nothing is built before a request
    for v in variants:
        out = v.generate([request(json_schema=SCHEMA)])
        assert out[0].parsed == {"a": 1}
    assert len(fake_vllm.built) == 1 and len(pool.bases) == 1
    kwargs = fake_vllm.built[0]
    assert (kwargs["enable_lora"], kwargs["max_loras"], kwargs["max_lora_rank"]) == (True, 4, 16)
    loras = [batch[0] for batch in fake_vllm.batches]
    assert loras[0] is None and [x.id for x in loras[1:]] == [1, 2, 3, 4]
    assert [x.path for x in loras[1:]] == [str(a) for a in adapters[1:]]
    # requests of several variants in one vLLM batch
    shared = variants[1].inner.base  # type: ignore[attr-defined]
    shared.generate([request(), request()], [variants[1].inner._lora, variants[3].inner._lora])  # type: ignore[attr-defined]
    assert [x.id for x in fake_vllm.batches[-1]] == [1, 3]
    for v in variants[:-1]:
        v.close()
    assert shared.loaded  # one variant still uses it
    variants[-1].close()
    assert not shared.loaded


def test_a_cached_plan_never_builds_the_engine(fake_vllm, tmp_path: Path) -> None:
    spec = ModelSpec(backend="vllm", model=str(_model_folder(tmp_path)), adapter=str(_adapter(tmp_path, "bc", 8)))
    cache = ResponseCache(tmp_path / "cache.sqlite")
    requests = [request(json_schema=SCHEMA, seed=i) for i in range(3)]
    first = CachedLLM(VLLMModel(spec), cache)
    first.generate(requests)
    assert len(fake_vllm.built) == 1
    again = CachedLLM(VLLMModel(spec), cache)
    assert all(r.cached for r in again.generate(requests))
    assert len(fake_vllm.built) == 1  # the second model never built an engine


def test_an_adapter_registered_after_the_build_rebuilds_with_a_slot_for_it(fake_vllm, tmp_path: Path) -> None:
    base = ModelSpec(backend="vllm", model=str(_model_folder(tmp_path)))
    pool = EnginePool()
    plain = build_llm(base, cache=None, pool=pool)
    plain.generate([request()])
    assert "enable_lora" not in fake_vllm.built[0]
    late = build_llm(base.model_copy(update={"adapter": str(_adapter(tmp_path, "sr", 8))}), cache=None, pool=pool)
    late.generate([request()])
    assert len(fake_vllm.built) == 2 and fake_vllm.built[1]["max_loras"] == 1
