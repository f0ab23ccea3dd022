"""End to end: the six notebooks on the `rehearsal` profile (the paper's structure at the ci size).

Its API roles (task generator, expert, partner, judge) go to the project's own OpenAI-compatible
server, started here on the embedded model under one served name per role, with 429 and 500 failures
injected; the policy is the embedded model with QLoRA-trained adapters. Runs into temporary results
and cache folders, so every call is made and counted: the manifest's per-role accounting must match
what the server served, the retries must have absorbed every injected failure, and `--estimate` must
bound the calls made. It stands in for a run of the `ci` profile (the same stages, sizes and checks,
plus the API path), keeping `make test` within its time.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

import nbformat
import pytest
from safetensors.torch import load_file

from sotopia_pi_lib.config import load_config
from sotopia_pi_lib.data import load_sotopia
from sotopia_pi_lib.llm.pool import EnginePool
from sotopia_pi_lib.llm.pricing import find_price, price_table
from sotopia_pi_lib.llm.registry import build_llm
from sotopia_pi_lib.llm.server import BackgroundServer, FaultPlan, create_app, inject_faults
from sotopia_pi_lib.llm.usage import MeteredLLM
from sotopia_pi_lib.pi.sft_data import read_examples
from sotopia_pi_lib.pipeline.context import resolve_params
from sotopia_pi_lib.pipeline.estimate import plan_calls
from sotopia_pi_lib.pipeline.freshness import stale_reasons
from sotopia_pi_lib.pipeline.runner import run_pipeline
from sotopia_pi_lib.serve import parse_served_models
from sotopia_pi_lib.store.manifest import load_manifest
from sotopia_pi_lib.store.run import STAGES, RunPaths, stage_problems

pytestmark = [pytest.mark.model, pytest.mark.slow]
PARAMS = "params/rehearsal.yaml"
PORT = 8799  # params/rehearsal.yaml's base_url
POLICY_LABELS = {"policy", "policy+bc", "base", "sr", "bc", "bc_sr"}


class Rehearsal:
    def __init__(self, paths: RunPaths, served: dict[str, MeteredLLM], injected: Counter[int]) -> None:
        self.paths, self.served, self.injected = paths, served, injected


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, embedded_model_dir):
    base = tmp_path_factory.mktemp("rehearsal")
    mp = pytest.MonkeyPatch()
    mp.setenv("SOTOPIA_PI_RESULTS", str(base / "results"))
    mp.setenv("SOTOPIA_PI_CACHE", str(base / "cache.sqlite"))  # cold: every call reaches the server
    mp.setenv("OMP_WAIT_POLICY", "PASSIVE")
    mp.delenv("OPENAI_API_KEY", raising=False)  # a loopback server needs no key
    pool = EnginePool()
    specs = parse_served_models(str(resolve_params("params/rehearsal_server.yaml")))
    served = {name: MeteredLLM(build_llm(spec, cache=None, pool=pool), name) for name, spec in specs.items()}
    app = create_app(served)
    injected = inject_faults(app, FaultPlan(period=7))  # 2 of every 7 requests: a 429, then a 500
    try:
        with BackgroundServer(app, port=PORT):
            run_pipeline(PARAMS)
        yield Rehearsal(RunPaths.for_run("rehearsal", base / "results"), served, injected)
    finally:
        pool.close()
        mp.undo()


def test_every_stage_completed_without_error_cells(rehearsal):
    for stage in STAGES:
        assert stage_problems(rehearsal.paths, stage) == []
        nb = nbformat.read(rehearsal.paths.notebooks / f"{stage}.ipynb", as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert errors == [], f"{stage} has error cells"
        params_cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert "params: str = \"params/smoke.yaml\"" in params_cell.source  # defaults, overridden after it


def test_stages_produced_their_data_and_qlora_adapters(rehearsal):
    paths = rehearsal.paths
    tasks = [json.loads(x) for x in paths.tasks.read_text().splitlines()]
    assert {t["round"] for t in tasks} == {1, 2} and all(t["generator"] == "openai:rehearsal-task-generator" for t in tasks)
    for source, round_ in (("bc", 1), ("sr", 1), ("bc_sr", 2)):
        assert paths.episodes(source, round_).stat().st_size > 0 and paths.ratings(source, round_).stat().st_size > 0
        examples = read_examples(paths.sft(source, round_))
        assert examples and all(e.action().action_type != "none" for e in examples)
    steps = load_config(resolve_params(PARAMS)).train.max_steps
    for name in ("bc", "sr", "bc_sr"):
        losses = json.loads((paths.adapter(name) / "loss_curve.json").read_text())
        assert [p["step"] for p in losses] == list(range(1, steps + 1))
        assert all(math.isfinite(p["loss"]) and p["loss"] > 0 for p in losses)
        provenance = json.loads((paths.adapter(name) / "adapter" / "provenance.json").read_text())
        assert provenance["config"]["qlora"] is True
        assert ("bc" in json.dumps(provenance["init_adapter"])) == (name == "bc_sr")
        weights = load_file(paths.adapter(name) / "adapter" / "adapter_model.safetensors")
        lora_b = [t for n, t in weights.items() if "lora_B" in n]
        assert lora_b and all(float(t.abs().sum()) > 0 for t in lora_b)  # LoRA's B starts at zero


def test_evaluation_and_figures(rehearsal):
    paths = rehearsal.paths
    evaluated = {p.name.split("__")[0] for p in paths.stage_dir("05_evaluate").glob("*__*.ratings.jsonl")}
    assert evaluated == {"base", "sr", "bc", "bc_sr", "expert"}
    assert all(paths.mmlu(m).is_file() for m in load_config(resolve_params(PARAMS)).mmlu.models)
    pngs = sorted(paths.figures.glob("*.png"))
    assert len(pngs) >= 7 and all(p.with_suffix(".pdf").is_file() for p in pngs)
    assert "rehearsal-judge" in paths.summary.read_text()


def role_usage(paths: RunPaths) -> dict[str, dict[str, dict]]:
    """stage -> role -> the manifest's usage of that role (policy variants summed under `policy`)."""
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for stage, record in load_manifest(paths.root).stages.items():
        for label, usage in record.llm_usage.items():
            role = "policy" if label in POLICY_LABELS else label
            have = out[stage].setdefault(role, Counter())
            have.update({k: v for k, v in usage.items() if isinstance(v, int | float)})
    return out


def test_accounting_per_role_matches_what_the_server_served(rehearsal):
    """Each API role's tokens, as the manifest has them, are the tokens its served name produced
    (the clients' cache was cold, so nothing was answered without the server); the cost is the
    profile's price for them; every injected 429 and 500 was retried to success."""
    cfg = load_config(resolve_params(PARAMS))
    usage = role_usage(rehearsal.paths)
    for role in ("task_generator", "expert", "partner", "judge"):
        spec = getattr(cfg.models, role)
        server = rehearsal.served[spec.model].usage
        mine = Counter()
        for per_stage in usage.values():
            mine.update(per_stage.get(role, {}))
        assert mine["requests"] > 0 and mine["failed"] == 0, role
        assert (mine["prompt_tokens"], mine["completion_tokens"]) == (server.prompt_tokens, server.completion_tokens)
        assert server.requests >= mine["requests"] - mine["cached"]  # a repair re-asks the server
        price = find_price(spec.model, price_table(spec.options["prices"]))
        assert mine["cost_usd"] == pytest.approx(price.cost(server.prompt_tokens, server.completion_tokens))
    assert rehearsal.injected[429] > 0 and rehearsal.injected[500] > 0


def test_the_estimate_bounds_the_calls_made(rehearsal):
    """`--estimate` plans every episode at max_turns: an upper bound for the agents' calls, and the
    judge's calls exactly (one per episode and per safety flag); the task generator's first batch is
    planned, and it may ask again for tasks it rejected (at most max_rounds batches). (It plans no
    MMLU: the policy's MMLU answers are taken out of its count.)"""
    cfg = load_config(resolve_params(PARAMS))
    plan = plan_calls(cfg, load_sotopia())
    usage = role_usage(rehearsal.paths)
    mmlu = sum(len(rehearsal.paths.mmlu(m).read_text().splitlines()) for m in cfg.mmlu.models)
    assert mmlu > 0
    for row in plan.itertuples():
        made = usage[row.stage].get(row.role, Counter())["requests"]
        if (row.stage, row.role) == ("05_evaluate", "policy"):
            made -= mmlu
        if row.role == "judge":
            assert made == row.calls, (row.stage, row.role)
        elif row.role == "task_generator":
            assert row.calls <= made <= row.calls * cfg.generate.max_rounds
        else:
            assert 0 < made <= row.calls, (row.stage, row.role)


def test_released_human_evaluation(rehearsal):
    """05 rated the profile's released episode; 06 wrote both CSVs, with the paper's human goals, the
    released GPT-4 scores and the run's judge against the annotators, and the four figures."""
    import pandas as pd

    from sotopia_pi_lib.analysis.human_eval import HUMAN_CSV_COLUMNS, JUDGE_CSV_COLUMNS, RELEASED_GPT4

    paths = rehearsal.paths
    assert len(paths.released_ratings.read_text().splitlines()) == 1
    out = paths.stage_dir("06_analysis")
    means = pd.read_csv(out / "released_human_eval.csv")
    assert list(means.columns) == HUMAN_CSV_COLUMNS
    goal = means[means["dimension"] == "goal"].set_index("model")["mean"].round(2).to_dict()
    assert {m: goal[m] for m in ("mistral-7b", "sr", "bc", "bc+sr", "gpt-4")} == {
        "mistral-7b": 2.89, "sr": 3.32, "bc": 3.55, "bc+sr": 4.29, "gpt-4": 5.25}
    vs = pd.read_csv(out / "judge_vs_human.csv")
    judge = "openai:rehearsal-judge"
    assert list(vs.columns) == JUDGE_CSV_COLUMNS and set(vs["judge"]) == {RELEASED_GPT4, judge}
    assert (vs[vs["judge"] == judge]["n"] == 2).all()  # one episode, both sides
    assert all((paths.figures / f"{name}.png").is_file() for name in
               ("human_gap", "gpt4_vs_human", "judge_vs_human", "human_agreement"))
    assert "## SOTOPIA-pi's released human evaluation" in paths.summary.read_text()


def test_the_run_used_its_own_cache_and_recorded_its_inputs(rehearsal):
    from sotopia_pi_lib.llm.cache import ResponseCache, default_cache_path

    own = default_cache_path()  # the fixture's fresh file, filled by this run's generations only
    assert own.is_relative_to(rehearsal.paths.root.parent.parent) and ResponseCache(own).count() > 0
    for stage in STAGES:
        marker = json.loads(rehearsal.paths.done_marker(stage).read_text())
        assert marker["inputs"]["params"] and marker["inputs"]["library"]["source"]
        assert all(c["failed"] <= c["total"] for c in marker["failures"].values())


def test_second_run_skips_and_a_deleted_file_reruns_its_stage(rehearsal, monkeypatch, capsys):
    monkeypatch.setenv("SOTOPIA_PI_RESULTS", str(rehearsal.paths.root.parent))
    run_pipeline(PARAMS)  # every stage fresh: no model, no server needed
    assert capsys.readouterr().out.count("fresh, skipped") == len(STAGES)
    rehearsal.paths.sft("sr", 1).unlink()
    cfg = load_config(resolve_params(PARAMS))
    assert stale_reasons(rehearsal.paths, "03_filter", cfg) == [
        "03_filter: output 03_filter/sr_round1.sft.jsonl was deleted"]
    assert stale_reasons(rehearsal.paths, "02_collect", cfg) == []
