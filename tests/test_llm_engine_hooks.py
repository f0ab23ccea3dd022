"""The engine's guard (engine/hooks.py): tested versions, the list of private hooks, and the self-check
that refuses the engine when a hook misbehaves, so the hf backend falls back to its plain path."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_llm_hf import ACTION_SCHEMA, action  # tests/ is on sys.path (no package)
from tiny_llama import tiny_llama

from sotopia_pi_lib.llm import engine
from sotopia_pi_lib.llm.engine import EngineSettings, EngineUnavailable, hooks
from sotopia_pi_lib.llm.engine.batch_kv import BatchKV
from sotopia_pi_lib.llm.engine.cpu_linear import PackedLinear
from sotopia_pi_lib.llm.engine.decode import Engine
from sotopia_pi_lib.llm.hf import HFModel
from sotopia_pi_lib.llm.types import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = EngineSettings(stop_ids=(0,), pad_id=0)


def test_the_tested_versions_are_the_pinned_ones_and_every_hook_is_present() -> None:
    """constraints.txt pins the stack `make setup` installs; the engine must have been tested on it."""
    pins = dict(
        line.strip().split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    )
    for package, version in hooks.TESTED_VERSIONS.items():
        assert pins[package] == version, package
    assert hooks.version_problem() is None
    assert hooks.missing_hook() is None
    assert all(h.used_in and h.why for h in hooks.HOOKS)


def test_versions_outside_the_tested_series_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = {"torch": "2.13.1+cpu", "transformers": "5.25.0"}
    monkeypatch.setattr(hooks, "installed_version", installed.get)
    problem = hooks.version_problem()
    assert problem and "transformers 5.25.0" in problem and "5.24.x" in problem
    with pytest.raises(EngineUnavailable, match="transformers 5.25.0") as caught:
        engine.start(tiny_llama(), lambda: None, SETTINGS)  # type: ignore[arg-type]
    assert not caught.value.modified  # refused before touching the model
    assert isinstance(engine.start(tiny_llama(), lambda: None, EngineSettings((0,), 0, ignore_versions=True)), Engine)


def test_a_missing_hook_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = hooks.Hook("transformers.cache_utils.Gone", "batch_kv.py", "test", lambda: False)
    monkeypatch.setattr(hooks, "HOOKS", (*hooks.HOOKS, gone))
    with pytest.raises(EngineUnavailable, match=r"private hook transformers.cache_utils.Gone \(batch_kv.py\)"):
        engine.start(tiny_llama(), lambda: None, SETTINGS)  # type: ignore[arg-type]


def test_the_self_check_passes_on_a_sound_model_and_catches_a_broken_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(engine.start(tiny_llama(), lambda: None, SETTINGS), Engine)  # type: ignore[arg-type]
    # as if a transformers release counted positions from another origin
    positions = BatchKV.positions
    monkeypatch.setattr(BatchKV, "positions", lambda self, counts=None: positions(self, counts) + 1)
    with pytest.raises(EngineUnavailable, match="self-check failed") as caught:
        engine.start(tiny_llama(), lambda: None, SETTINGS)  # type: ignore[arg-type]
    assert caught.value.modified
    # as if the cache protocol changed: the check raising is a refusal too
    monkeypatch.setattr(BatchKV, "write", lambda *a, **k: (_ for _ in ()).throw(TypeError("new signature")))
    with pytest.raises(EngineUnavailable, match="self-check raised TypeError: new signature"):
        engine.start(tiny_llama(), lambda: None, SETTINGS)  # type: ignore[arg-type]


@pytest.mark.model
def test_hf_falls_back_with_one_warning_and_a_fresh_model(
    embedded_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed self-check after the engine packed the weights: the backend reloads the model for its
    plain path, warns once saying why, and still answers schema-valid JSON."""
    monkeypatch.setattr(engine, "self_check", lambda *a: "the engine's self-check failed: simulated")
    monkeypatch.setattr("sotopia_pi_lib.llm.hf_base._warned", set())
    caplog.set_level(logging.WARNING, logger="sotopia_pi_lib.llm.hf_base")
    m = HFModel(ModelSpec(backend="hf", model="embedded"))
    for i in range(2):
        out = m.generate([action(i, max_tokens=40)])[0]
        assert out.ok and out.parsed["action_type"] in ACTION_SCHEMA["properties"]["action_type"]["enum"]
    assert m.path == "plain" and m.plain_reason == "the engine's self-check failed: simulated"
    assert not any(isinstance(x, PackedLinear) for x in m._loaded.net.modules())  # type: ignore[union-attr]
    warnings = [r for r in caplog.records if "plain transformers path" in r.getMessage()]
    assert len(warnings) == 1 and "simulated" in warnings[0].getMessage()
