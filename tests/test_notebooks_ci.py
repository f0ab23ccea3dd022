"""End to end: the six notebooks on the `ci` profile under papermill, with the real embedded model.

Runs into a temporary results folder with a fresh response cache of its own, so every answer is
generated here (a used machine's cache never replays them) and the project's cache is left alone.
"""

from __future__ import annotations

import json
import math

import nbformat
import pytest
from safetensors.torch import load_file

from sotopia_pi_lib.config import load_config
from sotopia_pi_lib.data import load_sotopia
from sotopia_pi_lib.judge import judge_episodes
from sotopia_pi_lib.llm.registry import build_llm
from sotopia_pi_lib.official import official_available
from sotopia_pi_lib.pi.sft import to_examples
from sotopia_pi_lib.pi.sft_data import read_examples
from sotopia_pi_lib.pipeline.context import resolve_params
from sotopia_pi_lib.pipeline.freshness import stale_reasons
from sotopia_pi_lib.pipeline.runner import run_pipeline
from sotopia_pi_lib.sim import EpisodeStore, make_specs, run_episodes, setups_for_task_set
from sotopia_pi_lib.store.run import STAGES, RunPaths, stage_problems

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory, embedded_model_dir):
    base = tmp_path_factory.mktemp("results")
    mp = pytest.MonkeyPatch()
    mp.setenv("SOTOPIA_PI_RESULTS", str(base))
    mp.setenv("SOTOPIA_PI_CACHE", str(tmp_path_factory.mktemp("cache") / "responses.sqlite"))
    mp.setenv("OMP_WAIT_POLICY", "PASSIVE")
    try:
        run_pipeline("params/ci.yaml")
        yield RunPaths.for_run("ci", base)
    finally:
        mp.undo()


def test_every_stage_completed_without_error_cells(ci_run):
    for stage in STAGES:
        assert stage_problems(ci_run, stage) == []
        nb = nbformat.read(ci_run.notebooks / f"{stage}.ipynb", as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert errors == [], f"{stage} has error cells"
        params_cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert "params: str = \"params/smoke.yaml\"" in params_cell.source  # defaults, overridden after it


def test_stages_produced_their_data(ci_run):
    tasks = [json.loads(x) for x in ci_run.tasks.read_text().splitlines()]
    assert {t["round"] for t in tasks} == {1, 2}
    for source, round_ in (("bc", 1), ("sr", 1), ("bc_sr", 2)):
        assert ci_run.episodes(source, round_).stat().st_size > 0
        assert ci_run.ratings(source, round_).stat().st_size > 0
        examples = read_examples(ci_run.sft(source, round_))
        assert examples and all(e.action().action_type != "none" for e in examples)
    for name in ("bc", "sr", "bc_sr"):
        assert (ci_run.adapter(name) / "adapter" / "adapter_model.safetensors").is_file()
    provenance = json.loads((ci_run.adapter("bc_sr") / "adapter" / "provenance.json").read_text())
    assert "bc" in json.dumps(provenance["init_adapter"])


def test_training_logged_every_step_and_moved_the_adapter(ci_run):
    """The ci profile trains 3 steps of one example each, so its first and last losses are of different
    examples and their order is chance (test_pi_train checks that the loss falls, on fixed data)."""
    losses = json.loads((ci_run.adapter("bc") / "loss_curve.json").read_text())
    steps = load_config(resolve_params("params/ci.yaml")).train.max_steps
    assert [p["step"] for p in losses] == list(range(1, steps + 1))
    assert all(math.isfinite(p["loss"]) and p["loss"] > 0 for p in losses)
    weights = load_file(ci_run.adapter("bc") / "adapter" / "adapter_model.safetensors")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and all(float(t.abs().sum()) > 0 for t in lora_b)  # LoRA's B starts at zero


def test_evaluation_and_figures(ci_run):
    evaluated = {p.name.split("__")[0] for p in ci_run.stage_dir("05_evaluate").glob("*__*.ratings.jsonl")}
    assert evaluated == {"base", "sr", "bc", "bc_sr", "expert"}
    assert ci_run.mmlu("base").is_file() and ci_run.mmlu("bc").is_file()
    pngs = sorted(ci_run.figures.glob("*.png"))
    assert len(pngs) >= 7 and all(p.with_suffix(".pdf").is_file() for p in pngs)
    assert "embedded" in ci_run.summary.read_text()


def test_released_human_evaluation(ci_run):
    """05 rated the ci profile's released episode; 06 wrote both CSVs, with the paper's human goals,
    the released GPT-4 scores and the run's judge against the annotators, and the four figures."""
    import pandas as pd

    from sotopia_pi_lib.analysis.human_eval import HUMAN_CSV_COLUMNS, JUDGE_CSV_COLUMNS, RELEASED_GPT4

    assert len(ci_run.released_ratings.read_text().splitlines()) == 1
    out = ci_run.stage_dir("06_analysis")
    means = pd.read_csv(out / "released_human_eval.csv")
    assert list(means.columns) == HUMAN_CSV_COLUMNS
    goal = means[means["dimension"] == "goal"].set_index("model")["mean"].round(2).to_dict()
    assert {m: goal[m] for m in ("mistral-7b", "sr", "bc", "bc+sr", "gpt-4")} == {
        "mistral-7b": 2.89, "sr": 3.32, "bc": 3.55, "bc+sr": 4.29, "gpt-4": 5.25}
    vs = pd.read_csv(out / "judge_vs_human.csv")
    assert list(vs.columns) == JUDGE_CSV_COLUMNS and set(vs["judge"]) == {RELEASED_GPT4, "hf:embedded"}
    assert (vs[vs["judge"] == "hf:embedded"]["n"] == 2).all()  # one episode, both sides
    assert all((ci_run.figures / f"{name}.png").is_file() for name in
               ("human_gap", "gpt4_vs_human", "judge_vs_human", "human_agreement"))
    assert "## SOTOPIA-pi's released human evaluation" in ci_run.summary.read_text()


def test_the_run_used_its_own_cache_and_recorded_its_inputs(ci_run):
    from sotopia_pi_lib.llm.cache import ResponseCache, default_cache_path

    own = default_cache_path()  # the fixture's fresh file, filled by this run's generations only
    assert own.is_relative_to(ci_run.root.parent.parent) and ResponseCache(own).count() > 0
    for stage in STAGES:
        marker = json.loads(ci_run.done_marker(stage).read_text())
        assert marker["inputs"]["params"] and marker["inputs"]["library"]["source"]
        assert all(c["failed"] <= c["total"] for c in marker["failures"].values())


def test_second_run_skips_and_a_deleted_file_reruns_its_stage(ci_run, monkeypatch, capsys):
    monkeypatch.setenv("SOTOPIA_PI_RESULTS", str(ci_run.root.parent))
    run_pipeline("params/ci.yaml")
    assert capsys.readouterr().out.count("fresh, skipped") == len(STAGES)
    ci_run.sft("sr", 1).unlink()
    cfg = load_config(resolve_params("params/ci.yaml"))
    assert stale_reasons(ci_run, "03_filter", cfg) == ["03_filter: output 03_filter/sr_round1.sft.jsonl was deleted"]
    assert stale_reasons(ci_run, "02_collect", cfg) == []


@pytest.mark.skipif(not official_available(), reason="run `make sotopia` first")
def test_a_few_ci_episodes_in_the_sotopia_style(ci_run):
    """The ci profile's models play two SOTOPIA-hard episodes in the sotopia style (with json_schema:
    the 135M model cannot write the package's JSON unaided), the package's evaluator rates them, and
    their turns become training examples holding the prompts the model received."""
    import pandas as pd

    cfg = load_config(resolve_params("params/ci.yaml"))
    sim = cfg.simulation.model_copy(update={
        "prompts": "sotopia", "progress": False,
        "sotopia": cfg.simulation.sotopia.model_copy(update={"json_schema": True})})  # fmt: skip
    llms = {}
    for role in ("policy", "judge", cfg.simulation.reformat_role):
        spec = getattr(cfg.models, role)
        llms[role] = next((m for m in llms.values() if m.spec == spec), None) or build_llm(spec)
    specs = make_specs(setups_for_task_set(load_sotopia(), "sotopia_hard")[:2], ("policy", "policy"),
                       seed=cfg.run.seed, tags={"source": "sotopia-style"})  # fmt: skip
    store = EpisodeStore(ci_run.root / "sotopia_style" / "episodes.jsonl")
    result = run_episodes(specs, {"policy": llms["policy"]}, sim, store, reformatter=llms[sim.reformat_role])
    assert result.summary.completed + result.summary.skipped == 2 and not result.summary.failed
    records = store.records()
    assert all(r.prompt_version == "sotopia==0.0.6+json" and r.turns for r in records)
    assert all(t.prompt[0].content.startswith("Imagine you are ") for r in records for t in r.turns)
    ratings = judge_episodes(records, llms["judge"], samples=cfg.judge.samples, progress=False,
                             reasoning_max_chars=cfg.judge.reasoning_max_chars,
                             reformatter=llms[sim.reformat_role])  # fmt: skip
    version = f"sotopia==0.0.6+json/reasoning{cfg.judge.reasoning_max_chars}"
    assert len(ratings) == 2 and all(r.rubric_version == version for r in ratings)
    kept = pd.DataFrame([{"episode_id": r.episode_id, "agent": a, "goal": 0.0} for r in records for a in (0, 1)])
    examples, stats = to_examples(records, kept, source="sotopia-style")
    acting = {(r.episode_id, t.index): list(t.prompt) for r in records for t in r.turns if t.action.action_type != "none"}
    assert {(e.episode_id, e.turn): e.prompt for e in examples} == acting and stats.examples == len(acting)
