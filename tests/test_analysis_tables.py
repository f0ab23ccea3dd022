"""Every statistic notebook 06 reports, computed by `build_tables` from a synthetic run with known scores
(`test_analysis_load.build_synthetic_run`): means and intervals, paired comparisons, safety, MMLU, the
reference raters of the agreement analysis and the published points."""

from __future__ import annotations

import numpy as np
import pytest
from test_analysis_load import JUDGE, Synthetic, build_synthetic_run

from sotopia_pi_lib.analysis.load import load_eval
from sotopia_pi_lib.analysis.tables import build_tables
from sotopia_pi_lib.errors import ConfigError, DataError
from sotopia_pi_lib.judge.rubric import DIMENSIONS


@pytest.fixture
def run(tmp_path) -> Synthetic:
    return build_synthetic_run(tmp_path / "synthetic", models=("base", "sr", "bc"), n_combos=3)


def test_build_tables_statistics(run):
    t = build_tables(run.paths, ("base", "sr", "bc", "bc_sr"))
    assert t.judge == JUDGE
    goal = t.score_stats[(t.score_stats["metric"] == "goal")].set_index(["model", "task_set"])
    for (model, task_set), goals in run.goals.items():
        row = goal.loc[(model, task_set)]
        assert row["mean"] == pytest.approx(np.mean(goals)) and row["n"] == 6
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert (
        t.gap_reason("bc_sr", "sotopia_all") == "no episode file" and t.gap_reason("bc", "sotopia_all") == ""
    )
    # paired vs base: sr's goal is base's + 1 on every combo and position
    p = t.paired[
        (t.paired["model_a"] == "sr")
        & (t.paired["metric"] == "goal")
        & (t.paired["task_set"] == "sotopia_all")
    ].iloc[0]
    assert p["diff"] == pytest.approx(1.0) and p["n"] == 6 and p["n_unpaired"] == 0 and p["p_value"] < 0.05
    comp = t.safety_stats[t.safety_stats["metric"] == "compliance"].set_index("model")
    assert comp.loc["sr", "mean"] == pytest.approx(np.mean(run.complied["sr"])) and comp.loc["sr", "n"] == 6
    mm = t.mmlu_stats.set_index(["model", "category"])
    assert mm.loc[("bc", "all"), "n"] == 32 and mm.loc[("bc", "STEM"), "n"] == 8
    assert not t.agreement.available and "no reference ratings" in t.agreement.note
    # the expert is not GPT-4 here: only the policy models get published values
    assert set(t.published["model"]) == {"base", "sr", "bc", "bc_sr"}
    assert set(t.published["task_set"]) == {"sotopia_hard"}


def test_repeated_judging_is_the_reference_and_labelled_so(tmp_path):
    s = build_synthetic_run(
        tmp_path / "rep",
        models=("base", "bc"),
        task_sets=("sotopia_hard",),
        n_combos=4,
        samples=3,
        mmlu_per_subject=0,
    )
    t = build_tables(s.paths, ("base", "bc"))
    a = t.agreement
    assert a.raters.kind == "repeat_judging" and "human" not in a.raters.describe()
    assert set(a.alpha["dimension"]) == {d.name for d in DIMENSIONS}
    assert set(a.gap["model"]) == {"base", "bc"} and (a.gap["n"] == 8).all()
    # reported scores average the three samples of each episode: n counts episodes
    assert (t.score_stats["n"] == 8).all()


def test_second_judge_needs_a_choice_unless_the_run_names_one(tmp_path):
    s = build_synthetic_run(
        tmp_path / "two",
        models=("base",),
        task_sets=("sotopia_all",),
        judges=(JUDGE, "openai:gpt-4o"),
        mmlu_per_subject=0,
    )
    t = build_tables(s.paths, ("base",))  # the manifest's judge role is hf:embedded
    assert t.judge == JUDGE and t.agreement.raters.kind == "second_judge"
    (s.paths.root / "manifest.json").unlink()
    with pytest.raises(DataError, match="several judges"):
        build_tables(s.paths, ("base",))
    assert build_tables(s.paths, ("base",), judge="openai:gpt-4o").judge == "openai:gpt-4o"


def test_empty_model_list_is_a_clear_error(run):
    with pytest.raises(ConfigError, match="model list is empty"):
        load_eval(run.paths, ())
    with pytest.raises(ConfigError, match="model list is empty"):
        build_tables(run.paths, ())
