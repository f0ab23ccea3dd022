"""Missing API keys and GPUs are reported before any stage runs, all at once, naming the role."""

from __future__ import annotations

import pytest

from sotopia_pi_lib.config import load_config
from sotopia_pi_lib.errors import ConfigError
from sotopia_pi_lib.llm.types import ModelSpec
from sotopia_pi_lib.pipeline.context import resolve_params
from sotopia_pi_lib.pipeline.preflight import check_machine, spec_problems
from sotopia_pi_lib.pipeline.runner import main


def test_paper_profile_without_key_or_gpu_lists_every_role(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = load_config(resolve_params("params/paper.yaml"))
    with pytest.raises(ConfigError) as e:
        check_machine(cfg, "params/paper.yaml", cuda=False)
    msg = str(e.value)
    for role in ("task_generator", "expert", "partner", "judge"):
        assert f"models.{role} (openai:" in msg
    assert "OPENAI_API_KEY is not set" in msg
    assert "models.policy (vllm:mistralai/Mistral-7B-Instruct-v0.1): the vllm backend needs a CUDA GPU" in msg


def test_key_set_and_gpu_leaves_only_the_vllm_package(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    cfg = load_config(resolve_params("params/paper.yaml"))
    problems = [p for r in ("expert", "judge", "policy") for p in spec_problems(r, getattr(cfg.models, r), cuda=True)]
    import importlib.util

    assert problems == ([] if importlib.util.find_spec("vllm") else
                        ["models.policy (vllm:mistralai/Mistral-7B-Instruct-v0.1): the vllm backend needs "
                         "the `vllm` package (pip install -e '.[gpu]')"])


def test_loopback_server_needs_no_key_and_cpu_profile_passes(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    local = ModelSpec(backend="openai", model="embedded", options={"base_url": "http://127.0.0.1:8000/v1"})
    assert spec_problems("judge", local, cuda=False) == []
    cuda_hf = ModelSpec(backend="hf", model="embedded", options={"device": "cuda"})
    assert "options.device is cuda" in spec_problems("policy", cuda_hf, cuda=False)[0]
    check_machine(load_config(resolve_params("params/smoke.yaml")), cuda=False)  # raises on a problem


def test_runner_refuses_before_any_stage_but_figures_need_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SOTOPIA_PI_RESULTS", str(tmp_path))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["--params", "params/paper.yaml", "--stages", "01_generate"]) == 1
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err
    assert not (tmp_path / "paper").exists()
