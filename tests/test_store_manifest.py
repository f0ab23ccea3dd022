"""The run manifest: provenance, stage records (also on failure), no secrets."""

from __future__ import annotations

import json

import pytest

from sotopia_pi_lib.store.manifest import (
    file_hashes,
    init_manifest,
    load_manifest,
    provenance_lines,
    scrub_secrets,
    stage,
)


def test_stage_records_success_and_failure(tmp_path):
    init_manifest(tmp_path, {"run": {"name": "t"}}, "params/t.yaml")
    with stage(tmp_path, "01_generate") as rec:
        # the shape StageContext records (llm.usage.MeteredLLM's summary per role)
        rec.llm_usage["task_generator"] = {"role": "task_generator", "model": "openai:gpt-4", "calls": 1,
                                           "requests": 3, "cached": 1, "prompt_tokens": 100,
                                           "completion_tokens": 20, "cost_usd": 0.5}  # fmt: skip
    with pytest.raises(RuntimeError), stage(tmp_path, "02_collect"):
        raise RuntimeError("boom")
    m = load_manifest(tmp_path)
    assert m.stages["01_generate"].status == "done" and m.stages["02_collect"].status == "failed"
    assert m.stages["01_generate"].duration_s >= 0 and m.git_commit and len(m.git_commit) == 40
    assert "torch" in m.packages and m.hardware["cpus"] >= 1
    assert any("task_generator 3 requests (1 cached), 120 tokens, $0.50" in line for line in provenance_lines(m))


def test_resumed_run_keeps_its_stages(tmp_path):
    init_manifest(tmp_path, {})
    with stage(tmp_path, "01_generate"):
        pass
    created = load_manifest(tmp_path).created
    init_manifest(tmp_path, {"x": 1})
    m = load_manifest(tmp_path)
    assert "01_generate" in m.stages and m.created == created and m.params == {"x": 1}


def test_secrets_never_reach_the_manifest(tmp_path, monkeypatch):
    key = "sk-" + "a1B2" * 10
    hf_token, custom = "hf_" + "Zq9" * 10, "custom-secret-value-77"
    monkeypatch.setenv("MY_PROVIDER_CRED", custom)  # a name that says nothing: known only via api_key_env
    params = {"models": {"judge": {"options": {"api_key": key, "api_key_env": "MY_PROVIDER_CRED",
                                               "base_url": "https://bob:hunter22@llm.example/v1?api_key=zz9"}},
                         "policy": {"options": {"token": "abc12345xyz"}}},
              "note": f"{key} {hf_token} {custom}", "sampling": {"max_tokens": 80}}
    init_manifest(tmp_path, params)
    m = load_manifest(tmp_path)
    with stage(tmp_path, "01_generate") as rec:
        rec.notes["error"] = f"HTTP 401 from https://bob:hunter22@llm.example/v1 with {custom}"
    text = (tmp_path / "manifest.json").read_text()
    for secret in (key, hf_token, custom, "hunter22", "zz9", "abc12345xyz"):
        assert secret not in text
    assert "MY_PROVIDER_CRED" in text and m.params["sampling"] == {"max_tokens": 80}
    assert "https://***@llm.example/v1?api_key=***" in text
    assert scrub_secrets({"a": [key]}) == {"a": ["sk-***"]}


def test_file_hashes_cover_folders(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "a.safetensors").write_bytes(b"x")
    (tmp_path / "f.json").write_text(json.dumps({}))
    h = file_hashes([tmp_path / "adapter", tmp_path / "f.json"], tmp_path)
    assert set(h) == {"adapter/a.safetensors", "f.json"} and all(len(v) == 64 for v in h.values())
