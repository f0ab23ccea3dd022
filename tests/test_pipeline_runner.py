"""The notebook runner's skip/re-run decisions by content, the read-only `--status`, and its error for a
bad params file. Stages are finished by hand here (no notebook runs), so only the bookkeeping is tested."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sotopia_pi_lib.config import load_config
from sotopia_pi_lib.errors import ConfigError
from sotopia_pi_lib.pipeline import freshness
from sotopia_pi_lib.pipeline.context import open_stage, resolve_params
from sotopia_pi_lib.pipeline.freshness import pipeline_status, stale_reasons
from sotopia_pi_lib.pipeline.runner import main, run_pipeline
from sotopia_pi_lib.store.manifest import load_manifest
from sotopia_pi_lib.store.run import STAGES, RunPaths

CI = "params/ci.yaml"


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("SOTOPIA_PI_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def finish_by_hand(stage: str, params: str | Path = CI, content: str = "x") -> RunPaths:
    """Open a stage as its notebook does, write one output and finish it."""
    ctx = open_stage(stage, params)
    out = ctx.paths.stage_dir(stage) / "out.txt"
    out.write_text(content)
    ctx.finish([out])
    return ctx.paths


def edited(tmp_path: Path, old: str, new: str, name: str = "p.yaml") -> Path:
    text = resolve_params(CI).read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def test_open_stage_records_params_inputs_and_start(results):
    ctx = open_stage("01_generate", CI)
    assert ctx.paths.root == results / "ci" and ctx.cfg.run.name == "ci"
    m = load_manifest(ctx.paths.root)
    assert m.params_file == CI and m.stages["01_generate"].status == "running"
    assert m.params["models"]["judge"]["model"] == "embedded"
    ctx.paths.tasks.write_text("{}\n")
    ctx.finish([ctx.paths.tasks])
    record = load_manifest(ctx.paths.root).stages["01_generate"]
    assert record.status == "done" and record.inputs["params:generate"] and record.inputs["library:source"]
    assert stale_reasons(ctx.paths, "01_generate", ctx.cfg) == []


def test_freshness_follows_content_not_file_times(results, tmp_path):
    """A stage's freshness follows its inputs' content, not file times: a params file touched later with
    the same content, or changed only where the stage does not read, leaves it fresh; an older file
    with another seed makes it stale."""
    paths = finish_by_hand("01_generate")
    same = edited(tmp_path, "seed: 0", "seed: 0", "same.yaml")
    later = time.time() + 5
    os.utime(same, (later, later))
    assert stale_reasons(paths, "01_generate", load_config(same)) == []  # newer file, same content
    hotter = load_config(edited(tmp_path, "sampling: {temperature: 1.0, max_tokens: 80}",
                                "sampling: {temperature: 0.7, max_tokens: 80}"))
    assert stale_reasons(paths, "01_generate", hotter) == []  # 01 does not read the simulation block
    other_seed = load_config(edited(tmp_path, "seed: 0", "seed: 1", "older.yaml"))
    os.utime(tmp_path / "older.yaml", (0, 0))  # an older params file pointed at the same run
    assert stale_reasons(paths, "01_generate", other_seed) == ["01_generate: params run.seed changed"]


def test_a_stage_is_stale_when_an_earlier_stage_changed_and_so_is_every_later_one(results):
    """Re-running 02 alone makes 03 and every stage after it stale, not 'complete'."""
    finish_by_hand("01_generate")
    finish_by_hand("02_collect", content="v1")
    paths = finish_by_hand("03_filter")
    cfg = load_config(resolve_params(CI))
    assert [r for _, r in pipeline_status(paths, cfg)][:3] == [[], [], []]
    finish_by_hand("02_collect", content="v2")  # 02 re-ran alone and made something else
    assert stale_reasons(paths, "03_filter", cfg) == ["03_filter: outputs of 02_collect changed since it ran"]
    finish_by_hand("02_collect", content="v1")  # the same outputs again: 03 is fresh again
    assert stale_reasons(paths, "03_filter", cfg) == []
    status = dict(pipeline_status(paths, cfg))
    assert status["04_train"][0].startswith("04_train: not finished")
    finish_by_hand("05_evaluate")  # finished, but after a stale stage: stale too
    assert dict(pipeline_status(paths, cfg))["05_evaluate"] == ["05_evaluate: an earlier stage (04_train) is stale"]


def test_a_library_or_notebook_change_makes_the_stage_stale(results, monkeypatch):
    paths = finish_by_hand("01_generate")
    cfg = load_config(resolve_params(CI))
    real = freshness.library_identity()
    monkeypatch.setattr(freshness, "library_identity", lambda: real | {"source": "edited"})
    assert stale_reasons(paths, "01_generate", cfg) == ["01_generate: library source changed (sotopia_pi_lib)"]
    monkeypatch.setattr(freshness, "library_identity", lambda: real)
    monkeypatch.setattr(freshness, "notebook_hash", lambda stage: "edited")
    assert stale_reasons(paths, "01_generate", cfg) == ["01_generate: notebook 01_generate.ipynb changed"]


def test_status_prints_each_stage_and_writes_nothing(results, tmp_path, capsys):
    assert main(["--params", CI, "--status"]) == 0
    out = capsys.readouterr().out
    assert all(f"{s}: stale" in out for s in STAGES) and "not finished" in out
    assert not results.exists()  # no run folder, manifest or lock was created
    finish_by_hand("01_generate")
    before = {p: p.stat().st_mtime_ns for p in (results / "ci").rglob("*")}
    hotter = edited(tmp_path, "generate:\n  n_tasks: 1", "generate:\n  n_tasks: 2")
    assert main(["--params", str(hotter), "--run", "ci", "--status"]) == 0
    out = capsys.readouterr().out
    assert "01_generate: stale" in out and "params generate changed" in out and "02_collect: stale" in out
    assert {p: p.stat().st_mtime_ns for p in (results / "ci").rglob("*")} == before


def test_bad_params_fail_before_any_stage(results, tmp_path, capsys):
    bad = edited(tmp_path, "max_turns", "max_turn", "bad.yaml")
    with pytest.raises(ConfigError, match="simulation.rules.max_turn: unknown key"):
        run_pipeline(bad)
    assert main(["--params", str(bad)]) == 1
    assert "unknown key" in capsys.readouterr().err
    assert main(["--params", str(bad), "--status"]) == 1
    assert not (results / "ci").exists()
