"""What SOTOPIA-pi's released human evaluation costs the pipeline, measured on this machine.

- 06: the released-data analysis (read and check the release, every table, the four figures, the
  CSVs), each step timed, in rounds; prints the median of each and the total it adds to notebook 06.
- 05 (`--judge`): the judge re-rating a profile's subset of the released episodes with the embedded
  model on the CPU, no response cache (what a first `make all` pays), in one batched call.

    python bench/human_eval.py
    python bench/human_eval.py --judge --params params/smoke.yaml
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from sotopia_pi_lib.analysis.figures.human_eval import draw_human_eval
from sotopia_pi_lib.analysis.human_eval import release_tables, write_human_eval_csvs
from sotopia_pi_lib.analysis.reference import load_reference
from sotopia_pi_lib.analysis.report import human_eval_section
from sotopia_pi_lib.data.human_eval import load_human_eval


class Clock:
    """Wall-clock and this process's CPU time of each step: on a shared machine the wall clock also
    counts other processes, the CPU time is what the step itself costs."""

    def __init__(self) -> None:
        self.times: dict[str, tuple[float, float]] = {}
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, step: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.times[step] = (wall - self._wall, cpu - self._cpu)
        self._wall, self._cpu = wall, cpu


def analysis_round(out: Path) -> dict[str, tuple[float, float]]:
    clock = Clock()
    ev = load_human_eval()
    clock.lap("read the release")
    tables = release_tables(ev, load_reference())
    clock.lap("tables")
    draw_human_eval(tables, out)
    clock.lap("4 figures (png+pdf)")
    write_human_eval_csvs(tables, out)
    human_eval_section(tables)
    clock.lap("csvs + summary section")
    return clock.times


def bench_analysis(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = [analysis_round(Path(tmp)) for _ in range(rounds)]
    print(f"06, released-data analysis: median of {rounds} rounds, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"  {'step':<24} {'wall':>7} {'cpu':>7}")
    total = [0.0, 0.0]
    for step in runs[0]:
        wall, cpu = (statistics.median(r[step][k] for r in runs) for k in (0, 1))
        total = [total[0] + wall, total[1] + cpu]
        print(f"  {step:<24} {wall:6.2f}s {cpu:6.2f}s")
    print(f"  {'added to 06':<24} {total[0]:6.2f}s {total[1]:6.2f}s")


def bench_judge(params: str) -> None:
    from sotopia_pi_lib.config import load_config
    from sotopia_pi_lib.data import load_sotopia
    from sotopia_pi_lib.evaluate.human_eval import judge_released, select_released
    from sotopia_pi_lib.llm.registry import build_llm
    from sotopia_pi_lib.pipeline.context import resolve_params
    from sotopia_pi_lib.sim.human_eval import released_episodes

    cfg = load_config(resolve_params(params))
    episodes = select_released(released_episodes(load_human_eval(), load_sotopia()), cfg.human_eval)
    judge = build_llm(cfg.models.judge, cache=None)
    with tempfile.TemporaryDirectory() as tmp:
        clock = Clock()
        ratings = judge_released(episodes, judge, Path(tmp) / "r.jsonl", cfg.judge, progress=False)
        clock.lap("judge")
    judge.close()
    wall, cpu = clock.times["judge"]
    tokens = sum(r.prompt_tokens for r in ratings), sum(r.completion_tokens for r in ratings)
    print(f"05, the judge ({cfg.models.judge.backend}:{cfg.models.judge.model}, reasoning cap "
          f"{cfg.judge.reasoning_max_chars}) on {len(episodes)} released episodes of {params}: {wall:.1f} s wall, "
          f"{cpu:.1f} s CPU over all threads, {len(ratings)} rated, {tokens[0]} prompt + {tokens[1]} "
          f"completion tokens ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--judge", action="store_true", help="also time the judge on the profile's released subset")
    ap.add_argument("--params", default="params/smoke.yaml")
    args = ap.parse_args()
    bench_analysis(args.rounds)
    if args.judge:
        bench_judge(args.params)


if __name__ == "__main__":
    main()
