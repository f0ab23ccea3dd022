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


def test_paper_profile_runs_the_papers_protocol_models_and_recipe():
    """What docs/fidelity.md says the paper profile does, pinned."""
    cfg = load_config(PARAMS / "paper.yaml")
    assert {r: getattr(cfg.models, r).model for r in ("task_generator", "expert", "partner", "judge")} == {
        "task_generator": "gpt-4-1106-preview", "expert": "gpt-4-0613", "partner": "gpt-3.5-turbo-0613",
        "judge": "gpt-4-0613"}
    assert cfg.generate.sampling.temperature == 0.5
    sim = cfg.simulation
    assert (sim.rules.max_turns, sim.rules.max_stale_turns, sim.rules.ending) == (20, 2, "official")
    assert (sim.visibility, sim.constrained, sim.reformat_role, sim.sampling.temperature) == ("official", False,
                                                                                               "partner", 1.0)
    assert cfg.judge.reasoning_max_chars is None and cfg.judge.samples == 1 and cfg.judge.temperature in (None, 0)
    t = cfg.train
    assert (t.qlora, t.lora.r, t.lora.alpha, t.lora.dropout, t.lora.target_modules) == (True, 8, 32, 0.1,
                                                                                         ("q_proj", "v_proj"))
    assert (t.lr, t.scheduler, t.warmup_ratio, t.max_length, t.epochs, t.batch_size, t.grad_accum) == (
        5e-5, "cosine", 0.03, 4096, 20, 4, 1)
    m = cfg.mmlu
    assert (m.k_shot, m.shots_from, m.prompt_format, m.choice_prefix, m.per_subject) == (5, "dev", "plain", " ", None)
    assert cfg.evaluate.task_sets == {"sotopia_all": None, "sotopia_hard": None} and cfg.evaluate.both_positions
