"""The vllm backend without a GPU: the clear failure when vLLM or CUDA is missing, and the pure
conversions from requests to vLLM parameters and from vLLM outputs to responses.

Generation itself needs vLLM on a CUDA GPU and is not exercised here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from sotopia_pi_lib.errors import BackendError, ConfigError
from sotopia_pi_lib.llm.json_output import derive_seed
from sotopia_pi_lib.llm.types import LLMRequest, Message, ModelSpec, SamplingParams
from sotopia_pi_lib.llm.vllm_backend import (
    VLLMModel,
    chat_messages,
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
    with pytest.raises(BackendError, match=r"needs the `vllm` package.*\.\[gpu\]"):
        VLLMModel(ModelSpec(backend="vllm", model="embedded"))


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
    assert chat_messages(request()) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


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
