"""The API cost estimate counts the planned calls from the params."""

from sotopia_pi_lib.config import load_config
from sotopia_pi_lib.pipeline.context import resolve_params
from sotopia_pi_lib.pipeline.estimate import cost_table, plan_calls


def test_paper_profile_costs_come_from_openai_roles_only(sotopia):
    cfg = load_config(resolve_params("params/paper.yaml"))
    table = cost_table(cfg, sotopia)
    # evaluation: 5 models x (450 + 70 + 35 combos) x 2 positions episodes of at most 21 turns (the
    # official rule ends an episode once the limit of 20 is exceeded), 11 of them the first seat's
    partner = table[(table.stage == "05_evaluate") & (table.role == "partner")]
    assert int(partner["calls"].iloc[0]) == 5 * (450 + 70 + 35) * 2 * 11
    assert (table[table.role == "policy"]["cost_usd"] == 0).all()  # Mistral on a GPU: no API cost
    assert table[table.role == "judge"]["cost_usd"].sum() > 0 and table["cost_usd"].sum() > 100


def test_embedded_profile_costs_nothing_and_scales_with_params(sotopia):
    cfg = load_config(resolve_params("params/smoke.yaml"))
    assert cost_table(cfg, sotopia)["cost_usd"].sum() == 0
    bigger = cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"n_tasks": 8})})
    a, b = plan_calls(cfg, sotopia), plan_calls(bigger, sotopia)
    gen = lambda t: int(t[t.stage == "01_generate"]["calls"].iloc[0])  # noqa: E731
    assert gen(b) == 2 * gen(a)


def test_estimate_cli_prints_the_total_and_runs_nothing(capsys, tmp_path, monkeypatch):
    from sotopia_pi_lib.pipeline.runner import main

    monkeypatch.setenv("SOTOPIA_PI_RESULTS", str(tmp_path))
    assert main(["--params", "params/paper.yaml", "--estimate"]) == 0
    out = capsys.readouterr().out
    assert "openai:gpt-4" in out and "total API cost at list prices: $1," in out
    assert not any(tmp_path.iterdir())


def test_the_released_episodes_the_judge_rates_are_planned(sotopia):
    cfg = load_config(resolve_params("params/paper.yaml"))
    none = cfg.model_copy(update={"human_eval": cfg.human_eval.model_copy(update={"models": ("gpt-3.5",)})})
    judge = lambda t: int(t[(t.stage == "05_evaluate") & (t.role == "judge")]["calls"].iloc[0])  # noqa: E731
    assert judge(plan_calls(cfg, sotopia)) - judge(plan_calls(none, sotopia)) == 151 - 14
