"""Execute the stage notebooks with papermill into `results/<run>/notebooks/` (what `make all` runs).

A stage is skipped while it is fresh: its `_done.json` lists outputs that are all still there and
unchanged, and the params blocks it reads, the outputs of earlier stages, the library and its notebook
are what they were when it ran (see `freshness`); otherwise it runs, and so does every later stage.
`--status` prints that verdict with the reasons and runs nothing (read-only). The whole run holds the
run folder's lock, so a second writer stops at once (see `store.lock`). The first failing notebook
stops the run with its name and the failing cell; the executed copy with the error stays under
`results/<run>/notebooks/` for inspection.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..config import load_config
from ..errors import SotopiaPiError
from ..redact import scrub_text
from ..store.lock import TOKEN_ENV, acquire_run_lock, child_environment, current_holder
from ..store.run import STAGES, RunPaths
from .context import resolve_params
from .freshness import notebook_path, pipeline_status, stale_reasons
from .preflight import check_machine

MODEL_STAGES = tuple(s for s in STAGES if s != "06_analysis")


class StageFailed(SotopiaPiError):
    """A stage notebook raised; the message names the notebook and the cell."""


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
        raise StageFailed(scrub_text(f"notebook {stage} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                                     f"executed copy with the error: {out}")) from None
    return out


def run_pipeline(params: str | Path, run: str = "", stages: list[str] | None = None, force: bool = False) -> None:
    params_file = resolve_params(params)
    cfg = load_config(params_file)  # fail on bad params before any work
    run = run or cfg.run.name
    paths = RunPaths.for_run(run)
    wanted = stages or list(STAGES)
    if any(s in MODEL_STAGES for s in wanted):  # 06 reads files only: figures need no key or GPU
        check_machine(cfg, str(params_file))
    lock = acquire_run_lock(paths.root)  # the whole run, every stage kernel included, is one writer
    os.environ.update(child_environment(lock))
    try:
        _run_stages(paths, params_file, run, cfg, wanted, force)
    finally:
        os.environ.pop(TOKEN_ENV, None)
        lock.release()


def _run_stages(paths: RunPaths, params_file: Path, run: str, cfg, wanted: list[str], force: bool) -> None:
    rerun_from = None
    t0 = time.perf_counter()
    for stage in STAGES:
        if stage not in wanted:
            continue
        reasons = ["forced"] if force else stale_reasons(paths, stage, cfg)
        if not reasons and rerun_from is None:
            print(f"[{stage}] fresh, skipped")
            continue
        rerun_from = rerun_from or stage
        why = "; ".join(reasons) if reasons else f"an earlier stage ({rerun_from}) re-ran"
        print(f"[{stage}] running ({why})", flush=True)
        started = time.perf_counter()
        out = execute_stage(stage, params_file, run, paths)
        print(f"[{stage}] done in {time.perf_counter() - started:.0f} s -> {out}", flush=True)
    print(f"run {run}: finished in {time.perf_counter() - t0:.0f} s; results in {paths.root}")


def print_status(params: str | Path, run: str = "") -> int:
    """Each stage fresh or stale with the reasons, like `make -n`; reads files only (no folder, manifest
    or lock is created). Exit code 0 either way (1 only for unreadable params)."""
    try:
        cfg = load_config(resolve_params(params))
    except SotopiaPiError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    paths = RunPaths.for_run(run or cfg.run.name)
    print(f"run {paths.root} with params {params}")
    holder = current_holder(paths.root) if paths.root.is_dir() else None
    if holder is not None:
        print(f"being written now by {holder.describe()}")
    for stage, reasons in pipeline_status(paths, cfg):
        print(f"  {stage}: {'stale' if reasons else 'fresh'}")
        for reason in reasons:
            print(f"      {reason.removeprefix(stage + ': ')}")
    return 0


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
    ap.add_argument("--status", action="store_true",
                    help="print each stage as fresh or stale with the reasons, run nothing (read-only)")
    args = ap.parse_args(argv)
    if args.estimate:
        return print_estimate(args.params)
    if args.status:
        return print_status(args.params, args.run)
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
