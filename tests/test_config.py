"""Params files: every profile validates; bad keys are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotopia_pi_lib.config import ROLES, load_config, parse_config
from sotopia_pi_lib.errors import ConfigError

PARAMS = Path(__file__).parent.parent / "params"


@pytest.mark.parametrize("profile", ["smoke", "ci", "paper"])
def test_profiles_validate(profile):
    cfg = load_config(PARAMS / f"{profile}.yaml")
    assert cfg.run.name == profile
    assert all(getattr(cfg.models, r).model for r in ROLES)


def _raw():
    spec = {"backend": "hf", "model": "embedded"}
    return {"run": {"name": "x"}, "models": {r: dict(spec) for r in ROLES}, "generate": {"n_tasks": 1}}


def test_minimal_config_is_valid_and_nested_typos_are_named():
    assert parse_config(_raw()).simulation.rules.max_turns == 20
    raw = _raw()
    raw["simulation"] = {"rules": {"max_turn": 5}}
    raw["train"] = {"lora": {"rank": 8}}
    with pytest.raises(ConfigError) as e:
        parse_config(raw, "p.yaml")
    assert "simulation.rules.max_turn: unknown key" in str(e.value)
    assert "train.lora.rank: unknown key" in str(e.value) and str(e.value).startswith("p.yaml")


def test_misspelt_key_is_named():
    raw = _raw()
    raw["run"]["sead"] = 1
    with pytest.raises(ConfigError, match=r"run\.sead: unknown key"):
        parse_config(raw)


def test_role_without_model_is_named():
    raw = _raw()
    del raw["models"]["judge"]
    with pytest.raises(ConfigError, match=r"models\.judge: missing"):
        parse_config(raw)


def test_unknown_backend_and_wrong_type():
    raw = _raw()
    raw["models"]["expert"]["backend"] = "llamacpp"
    raw["run"]["seed"] = "zero"
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    assert "models.expert.backend" in str(e.value) and "run.seed" in str(e.value)


def test_bad_yaml_names_line(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("run:\n  name: x\n models: [\n")
    with pytest.raises(ConfigError, match=r"p\.yaml:\d+: not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_models_must_be_trainable_from_the_collected_data():
    raw = _raw()
    raw["collect"] = {"sources": ["sr"], "bc_sr": False}
    raw["evaluate"] = {"models": ["base", "bc"]}
    with pytest.raises(ConfigError, match=r"evaluate.models: \['bc'\] not trained"):
        parse_config(raw)
    raw["collect"] = {"sources": ["sr"], "bc_sr": True}
    with pytest.raises(ConfigError, match="bc_sr needs 'bc'"):
        parse_config(raw)
