"""Run folder layout and stage completion markers."""

from __future__ import annotations

import pytest

from sotopia_pi_lib.store.run import RunPaths, mark_done, safe_name, stage_problems


def test_layout_and_safe_names(tmp_path):
    p = RunPaths.for_run("r", tmp_path)
    assert p.episodes("bc", 1) == tmp_path / "r" / "02_collect" / "bc_round1.episodes.jsonl"
    assert p.eval_episodes("hf:embedded+bc", "sotopia_hard").name == "hf_embedded+bc__sotopia_hard.episodes.jsonl"
    assert safe_name("openai:gpt-4/x") == "openai_gpt-4_x"
    with pytest.raises(ValueError, match="unknown stage"):
        p.stage_dir("07_extra")


def test_deleted_or_changed_output_makes_stage_incomplete(tmp_path):
    p = RunPaths.for_run("r", tmp_path)
    assert stage_problems(p, "01_generate") == [f"01_generate: not finished ({p.done_marker('01_generate')} missing)"]
    p.tasks.parent.mkdir(parents=True)
    p.tasks.write_text("{}\n")
    adapter = p.adapter("bc")
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"w")
    mark_done(p, "01_generate", [p.tasks, adapter])
    assert stage_problems(p, "01_generate") == []
    p.tasks.write_text("{}\n{}\n")
    (adapter / "adapter_model.safetensors").unlink()
    problems = stage_problems(p, "01_generate")
    assert any("01_generate/tasks.jsonl changed" in x for x in problems)
    assert any("adapter_model.safetensors was deleted" in x for x in problems)
