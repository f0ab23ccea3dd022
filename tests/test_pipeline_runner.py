"""The notebook runner's skip/re-run decisions and its error for a bad params file."""

from __future__ import annotations

import os
import time

import pytest

from sotopia_pi_lib.errors import ConfigError
from sotopia_pi_lib.pipeline.context import open_stage, resolve_params
from sotopia_pi_lib.pipeline.runner import main, run_pipeline, stale_reasons
from sotopia_pi_lib.store.manifest import load_manifest
from sotopia_pi_lib.store.run import RunPaths, mark_done


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("SOTOPIA_PI_RESULTS", str(tmp_path))
    return tmp_path


def test_open_stage_records_params_and_start(results):
    ctx = open_stage("01_generate", "params/ci.yaml")
    assert ctx.paths.root == results / "ci" and ctx.cfg.run.name == "ci"
    m = load_manifest(ctx.paths.root)
    assert m.params_file == "params/ci.yaml" and m.stages["01_generate"].status == "running"
    assert m.params["models"]["judge"]["model"] == "embedded"
    ctx.paths.tasks.write_text("{}\n")
    ctx.finish([ctx.paths.tasks])
    assert load_manifest(ctx.paths.root).stages["01_generate"].status == "done"
    assert stale_reasons(ctx.paths, "01_generate", resolve_params("params/ci.yaml")) == []


def test_params_or_notebook_newer_than_the_stage_reruns_it(results, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(resolve_params("params/ci.yaml").read_text())
    paths = RunPaths.for_run("ci")
    out = paths.stage_dir("01_generate") / "x.txt"
    out.parent.mkdir(parents=True)
    out.write_text("x")
    mark_done(paths, "01_generate", [out])
    assert stale_reasons(paths, "01_generate", params) == []
    later = time.time() + 5
    os.utime(params, (later, later))
    assert stale_reasons(paths, "01_generate", params) == ["01_generate: p.yaml changed since the stage finished"]


def test_bad_params_fail_before_any_stage(results, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(resolve_params("params/ci.yaml").read_text().replace("max_turns", "max_turn"))
    with pytest.raises(ConfigError, match="simulation.rules.max_turn: unknown key"):
        run_pipeline(bad)
    assert main(["--params", str(bad)]) == 1
    assert "unknown key" in capsys.readouterr().err
    assert not (results / "ci").exists()
