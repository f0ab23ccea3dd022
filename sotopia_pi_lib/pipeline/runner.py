"""Execute the stage notebooks with papermill into `results/<run>/notebooks/` (what `make all` runs).

A stage is skipped while its `_done.json` marker is valid (every output still there, unchanged) and
it is newer than the params file and the notebook; otherwise it runs, and so does every later stage.
The first failing notebook stops the run with its name and the failing cell; the executed copy
with the error stays under `results/<run>/notebooks/` for inspection.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..config import load_config
from ..errors import SotopiaPiError
from ..paths import project_root
from ..store.run import STAGES, RunPaths, stage_problems
from .context import resolve_params
from .preflight import check_machine

MODEL_STAGES = tuple(s for s in STAGES if s != "06_analysis")


class StageFailed(SotopiaPiError):
    """A stage notebook raised; the message names the notebook and the cell."""


def notebook_path(stage: str) -> Path:
    return project_root() / "notebooks" / f"{stage}.ipynb"


def stale_reasons(paths: RunPaths, stage: str, params_file: Path) -> list[str]:
    """Why a stage must (re)run; empty when its outputs are complete and newer than its inputs."""
    problems = stage_problems(paths, stage)
    if problems:
        return problems
    done = paths.done_marker(stage).stat().st_mtime
    return [f"{stage}: {p.name} changed since the stage finished"
            for p in (params_file, notebook_path(stage)) if p.stat().st_mtime > done]


def execute_stage(stage: str, params_file: Path, run: str, paths: RunPaths) -> Path:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = paths.notebooks / f"{stage}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(notebook_path(stage)), str(out), cwd=str(notebook_path(stage).parent),
                                   parameters={"run": run, "params": str(params_file)}, progress_bar=False,
                                   log_output=False, kernel_name="python3")
    except PapermillExecutionError as e:
        raise StageFailed(f"notebook {stage} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                          f"executed copy with the error: {out}") from None
    return out


def run_pipeline(params: str | Path, run: str = "", stages: list[str] | None = None, force: bool = False) -> None:
    params_file = resolve_params(params)
    cfg = load_config(params_file)  # fail on bad params before any work
    run = run or cfg.run.name
    paths = RunPaths.for_run(run)
    wanted = stages or list(STAGES)
    if any(s in MODEL_STAGES for s in wanted):  # 06 reads files only: figures need no key or GPU
        check_machine(cfg, str(params_file))
    rerun_from = None
    t0 = time.perf_counter()
    for stage in STAGES:
        if stage not in wanted:
            continue
        reasons = ["forced"] if force else stale_reasons(paths, stage, params_file)
        if not reasons and rerun_from is None:
            print(f"[{stage}] complete, skipped")
            continue
        rerun_from = rerun_from or stage
        why = "; ".join(reasons) if reasons else f"an earlier stage ({rerun_from}) re-ran"
        print(f"[{stage}] running ({why})", flush=True)
        started = time.perf_counter()
        out = execute_stage(stage, params_file, run, paths)
        print(f"[{stage}] done in {time.perf_counter() - started:.0f} s -> {out}", flush=True)
    print(f"run {run}: finished in {time.perf_counter() - t0:.0f} s; results in {paths.root}")


def print_estimate(params: str | Path) -> int:
    from ..data import load_sotopia
    from .estimate import cost_table

    try:
        cfg = load_config(resolve_params(params))
        table = cost_table(cfg, load_sotopia())
    except SotopiaPiError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    by_role = table.groupby(["role", "model"], as_index=False)[
        ["calls", "prompt_tokens", "completion_tokens", "cost_usd"]].sum().sort_values("cost_usd", ascending=False)
    print(f"planned LLM calls of {params} (upper bound: every episode runs to max_turns)\n")
    print(table.to_string(index=False))
    print("\nby role:\n" + by_role.to_string(index=False))
    print(f"\ntotal API cost at list prices: ${table['cost_usd'].sum():,.0f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sotopia_pi_lib.pipeline", description=__doc__)
    ap.add_argument("--params", default="params/smoke.yaml")
    ap.add_argument("--run", default="", help="run folder under results/ (default: the params' run.name)")
    ap.add_argument("--stages", default="", help=f"comma-separated subset of {','.join(STAGES)}")
    ap.add_argument("--force", action="store_true", help="re-run the stages even if complete")
    ap.add_argument("--estimate", action="store_true",
                    help="print the planned LLM calls, tokens and API cost of the params, run nothing")
    args = ap.parse_args(argv)
    if args.estimate:
        return print_estimate(args.params)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()] or None
    unknown = [s for s in stages or [] if s not in STAGES]
    if unknown:
        ap.error(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    try:
        run_pipeline(args.params, args.run, stages, args.force)
    except SotopiaPiError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
