"""Fault injection on the `ci` profile: kill, corrupt and disturb whole pipeline runs, and check that
the results that come out are the ones an undisturbed run makes.

Every run uses folders of its own under --workdir (SOTOPIA_PI_RESULTS and SOTOPIA_PI_CACHE point there),
never the project's results/ or cache/. The faults, one line each:

  kill-warm-K   kill -9 at a seeded random moment of a run whose model answers are all in its cache
                (so the kill lands in training, file writes, stage starts and replays), re-run to the end
  kill-cold-K   the same on a cold cache (the kill lands in generation, too)
                (odd K kill the whole process group, even K only the runner: its orphaned notebook
                kernel must not write beside the next run)
  corrupt-rewritten    a middle line of the longest results JSONL made garbage, then re-run
  corrupt-append-only  a line of an append-only episode file made garbage: the run must stop with an
                       error naming file and line; that line is deleted as the message says; re-run
  second-writer  a second `make all` on a run being written: must stop at once naming the holder
  flip-param     simulation temperature changed on a finished run: --status must name the stale stages,
                 the re-run must use no episode of the old settings; flipped back, it must equal the start
  server-quota   the roles behind an OpenAI-compatible server get `insufficient_quota`: the stage must stop
                 at the first request naming it, and not be marked done
  server-faults  that server answers 429 / 500 / timeouts / garbage bodies / garbage JSON at seeded
                 random; the pipeline is re-run until it completes

Survived means: every stage ends done; the results equal those of an uninterrupted run (same tasks,
episodes, ratings, training examples and MMLU answers, by id and content, with no duplicate or missing
line; same adapters and loss curves); and every error on the way named the file and line, the key or the
holder at fault. An uninterrupted run is the reference run where all answers were cached before the
fault (warm kills, corruptions, second writer, flip); where the fault itself made the answers (cold
kills, server faults) it is a fresh run replaying the fault run's cache (for the server, one that refuses
every request the cache does not hold, so it takes the same retry paths). A cold reference run cannot be
compared directly: the embedded model in bfloat16 samples slightly differently with other batch-mates.
Tolerances: floats (MMLU log-probabilities, losses, scores' means) rel 1e-5 / abs 1e-6, adapter weights
rel 1e-5 / abs 1e-7; timing, cache flags, absolute paths and diagnostic files (failure records, rejected
tasks, superseded/, notebooks, figures, the annotation packet) are not compared.

    python bench/faults.py                       # all faults (about an hour and a half on 2 cores)
    python bench/faults.py --only kill-warm --kills 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "params" / "ci.yaml"
STAGES = ("01_generate", "02_collect", "03_filter", "04_train", "05_evaluate", "06_analysis")
VOLATILE = {"duration_s", "latency_s", "cached", "created", "train_time_s", "path", "versions"}
SKIP_PARTS = {"superseded", "notebooks", "annotations", "figures"}
SKIP_NAMES = re.compile(r"(failures\.jsonl|rejected\.jsonl)$")
REL, ABS, WEIGHT_ABS = 1e-5, 1e-6, 1e-7


@dataclass
class Outcome:
    name: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        verdict = "survived" if not self.problems else "FAILED"
        detail = "; ".join(self.problems or self.notes)
        return f"{self.name:<22} {verdict}{': ' + detail if detail else ''}"


# -- running the pipeline ------------------------------------------------------------------------------


@dataclass
class Space:
    """One scenario's results folder and response cache under the work directory."""

    results: Path
    cache: Path
    log_name: str = "pipeline.log"

    @property
    def run(self) -> Path:
        return self.results / "ci"

    @property
    def log(self) -> Path:
        return self.results.parent / self.log_name

    def env(self) -> dict[str, str]:
        return {**os.environ, "SOTOPIA_PI_RESULTS": str(self.results), "SOTOPIA_PI_CACHE": str(self.cache),
                "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}


def space(workdir: Path, name: str, cache_from: Space | None = None, results_from: Space | None = None) -> Space:
    s = Space(workdir / name / "results", workdir / name / "cache.sqlite")
    if name != "reference":  # every other scenario starts afresh, also in a reused work folder
        shutil.rmtree(workdir / name, ignore_errors=True)
    s.results.mkdir(parents=True, exist_ok=True)
    if cache_from is not None:
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(cache_from.cache) + suffix)
            if src.exists():
                shutil.copy2(src, str(s.cache) + suffix)
    if results_from is not None:
        shutil.copytree(results_from.run, s.run, symlinks=True)
    return s


def start(s: Space, params: Path = CI, *extra: str) -> subprocess.Popen:
    log = open(s.log, "a")  # noqa: SIM115 -- closed with the process
    return subprocess.Popen([sys.executable, "-m", "sotopia_pi_lib.pipeline", "--params", str(params),
                             "--run", "ci", *extra], cwd=ROOT, env=s.env(), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, s: Space, timeout: float = 3600) -> tuple[int, str]:
    """Wait for a run; its exit code and the last lines of its log (the error, if any)."""
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        rc = -9
    tail = s.log.read_text(errors="replace").splitlines()[-12:]
    return rc, "\n".join(tail)


def run_once(s: Space, params: Path = CI, *extra: str) -> tuple[int, str]:
    return finish(start(s, params, *extra), s)


def run_to_end(s: Space, params: Path = CI, attempts: int = 6) -> tuple[bool, list[str]]:
    """Re-run until every stage is done; the error of each failed attempt is returned."""
    errors = []
    for _ in range(attempts):
        rc, tail = run_once(s, params)
        if rc == 0:
            return True, errors
        errors.append(last_error(tail))
    return False, errors


def last_error(tail: str) -> str:
    lines = [x for x in tail.splitlines() if x.startswith("error:") or "Error" in x or "failed" in x]
    return (lines[-1] if lines else tail.splitlines()[-1] if tail else "no output")[:300]


def kill_all(pids: list[int]) -> None:
    """kill -9, all at once."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a run and everything it started."""
    kill_all([proc.pid, *descendants(proc.pid)])
    proc.wait()


def running_stage(s: Space) -> str:
    found = re.findall(r"\[(\d\d_\w+)\] running", s.log.read_text(errors="replace"))
    return found[-1] if found else "startup"


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (notebook kernels run in a session of their own, so a process-group
    kill would miss them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


# -- what a run's results are -------------------------------------------------------------------------------


RUN_PATH = re.compile(r"/[^\s\"']*/results/ci(?=/|$)")  # any scenario's run folder (results may be copied)


def strip(node: Any) -> Any:
    """A record without what differs between equal runs: timings, cache flags, the run folder's path."""
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k not in VOLATILE}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return RUN_PATH.sub("<run>", node) if isinstance(node, str) else node


def snapshot(run: Path) -> dict[str, Any]:
    """The comparable content of a run folder: JSONL records (sorted), JSON records, adapter weights."""
    out: dict[str, Any] = {"done": sorted(s for s in STAGES if (run / s / "_done.json").is_file())}
    links = [f for link in run.glob("04_train/*/adapter") for f in link.rglob("*")]  # rglob stops at links
    for f in sorted([*run.rglob("*"), *links]):
        rel = f.relative_to(run)
        if not f.is_file() or SKIP_PARTS & set(rel.parts) or SKIP_NAMES.search(f.name):
            continue
        if any(p.startswith("adapter-") or p == "checkpoints" for p in rel.parts):
            continue  # reached through the `adapter` link; checkpoints are resumable state, not results
        if f.suffix == ".jsonl":
            lines = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
            out[str(rel)] = sorted((strip(x) for x in lines), key=lambda r: json.dumps(r, sort_keys=True))
        elif f.name in ("adapter_config.json", "provenance.json", "loss_curve.json"):
            out[str(rel)] = strip(json.loads(f.read_text()))
        elif f.name == "adapter_model.safetensors":
            from safetensors.numpy import load_file

            out[str(rel)] = {k: v.astype("float64") for k, v in load_file(f).items()}
    return out


def duplicates(run: Path) -> list[str]:
    """Results lines present twice (a unit stored twice), per file."""
    found = []
    for f in run.rglob("*.jsonl"):
        rel = f.relative_to(run)
        if SKIP_PARTS & set(rel.parts) or SKIP_NAMES.search(f.name):
            continue
        lines = [x for x in f.read_text().splitlines() if x.strip()]
        if len(lines) != len(set(lines)):
            found.append(f"{rel}: {len(lines) - len(set(lines))} duplicate line(s)")
    return found


def differ(a: Any, b: Any, where: str) -> str | None:
    """Where two snapshots first differ (floats within the stated tolerances), or None."""
    if hasattr(a, "shape") or hasattr(b, "shape"):
        import numpy as np

        same = getattr(a, "shape", None) == getattr(b, "shape", None) and np.allclose(a, b, rtol=REL, atol=WEIGHT_ABS)
        return None if same else f"{where}: weights differ"
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=REL, abs_tol=ABS)
        return None if ok else f"{where}: {a!r} != {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where}: keys {sorted(set(a) ^ set(b))[:4]} only on one side"
        return next((d for k in a if (d := differ(a[k], b[k], f"{where}/{k}"))), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} records"
        return next((d for i, (x, y) in enumerate(zip(a, b, strict=True)) if (d := differ(x, y, f"{where}[{i}]"))),
                    None)
    return None if a == b else f"{where}: {str(a)[:60]!r} != {str(b)[:60]!r}"


def damage_middle_line(target: Path, damage: Callable[[str], str]) -> tuple[int, int]:
    """Replace the middle line of `target` by damage(line); (its 1-based number, the file's line count)."""
    lines = target.read_text().splitlines(keepends=True)
    middle = len(lines) // 2
    lines[middle] = damage(lines[middle])
    target.write_text("".join(lines))
    return middle + 1, len(lines)


def check_equal(outcome: Outcome, run: Path, reference: dict[str, Any]) -> None:
    got = snapshot(run)
    if got["done"] != list(STAGES):
        outcome.problems.append(f"stages done: {got['done']}")
    outcome.problems += duplicates(run)
    difference = differ(got, reference, "results")
    if difference:
        outcome.problems.append(difference)


# -- the faults --------------------------------------------------------------------------------------------


@dataclass
class Bench:
    workdir: Path
    rng: random.Random
    reference: Space | None = None
    ref_snapshot: dict[str, Any] = field(default_factory=dict)
    cold_s: float = 0.0
    warm_s: float = 0.0

    def prepare(self) -> Outcome:
        """The reference run (cold; kept in --workdir and reused by a later call on the same folder),
        and a warm replay of it that must equal it exactly."""
        outcome = Outcome("reference")
        self.reference = space(self.workdir, "reference")
        timing = self.reference.results.parent / "timing.json"
        if timing.is_file() and (self.reference.run / STAGES[-1] / "_done.json").is_file():
            self.cold_s = json.loads(timing.read_text())["cold_s"]
            outcome.notes.append("reference reused")
        else:
            t0 = time.perf_counter()
            ok, errors = run_to_end(self.reference, attempts=1)
            self.cold_s = time.perf_counter() - t0
            if not ok:
                outcome.problems.append(f"the reference run failed: {errors}")
                return outcome
            timing.write_text(json.dumps({"cold_s": self.cold_s}))
        self.ref_snapshot = snapshot(self.reference.run)
        shutil.rmtree(self.workdir / "reference-warm", ignore_errors=True)
        warm = space(self.workdir, "reference-warm", cache_from=self.reference)
        t0 = time.perf_counter()
        ok, errors = run_to_end(warm, attempts=1)
        self.warm_s = time.perf_counter() - t0
        check_equal(outcome, warm.run, self.ref_snapshot)
        outcome.notes.append(f"cold run {self.cold_s:.0f} s, warm replay {self.warm_s:.0f} s, equal")
        return outcome

    def kill(self, k: int, cold: bool) -> Outcome:
        name = f"kill-{'cold' if cold else 'warm'}-{k}"
        outcome = Outcome(name)
        s = space(self.workdir, name, cache_from=None if cold else self.reference)
        at = self.rng.uniform(0.05, 0.95) * (self.cold_s if cold else self.warm_s)
        whole_group = k % 2 == 1
        proc = start(s)
        time.sleep(at)
        stage = running_stage(s) if proc.poll() is None else "nothing (it had finished)"
        kill_all([proc.pid] + (descendants(proc.pid) if whole_group else []))
        proc.wait()
        ok, errors = run_to_end(s)  # an orphaned kernel exits by itself; the lock waits for it meanwhile
        what = "the runner and its kernel" if whole_group else "the runner only"
        outcome.notes.append(f"killed {what} at {at:.0f} s in {stage}; re-runs: {len(errors) + 1}")
        if not ok:
            outcome.problems.append(f"never completed: {errors[-1]}")
            return outcome
        if cold:  # compare with an uninterrupted run over the answers this one got
            replay = space(self.workdir, name + "-replay", cache_from=s)
            if not run_to_end(replay, attempts=1)[0]:
                outcome.problems.append("the replay run failed")
            check_equal(outcome, s.run, snapshot(replay.run))
        else:
            check_equal(outcome, s.run, self.ref_snapshot)
        return outcome

    def corrupt_rewritten(self) -> Outcome:
        outcome = Outcome("corrupt-rewritten")
        s = space(self.workdir, outcome.name, cache_from=self.reference, results_from=self.reference)
        files = [f for f in s.run.rglob("*.jsonl") if not SKIP_PARTS & set(f.relative_to(s.run).parts)]
        target = max(files, key=lambda f: len(f.read_text().splitlines()))
        line, count = damage_middle_line(target, lambda _: '{"this line": "was corrupted", ' + "\n")
        outcome.notes.append(f"{target.relative_to(s.run)} line {line} of {count}; its stage re-ran")
        self.complete_as_reference(outcome, s)
        return outcome

    def corrupt_append_only(self) -> Outcome:
        outcome = Outcome("corrupt-append-only")
        s = space(self.workdir, outcome.name, cache_from=self.reference, results_from=self.reference)
        target = s.run / "02_collect" / "bc_round1.episodes.jsonl"
        line, count = damage_middle_line(target, lambda text: text[: len(text) // 2] + "\n")  # half a record
        rc, tail = run_once(s)
        error = last_error(tail)
        if rc == 0 or not re.search(rf"{re.escape(str(target))}:{line}\b", tail):
            outcome.problems.append(f"expected an error naming {target.name}:{line}, got rc {rc}: {error}")
        else:  # do what the message says: delete that line
            lines = target.read_text().splitlines(keepends=True)
            target.write_text("".join(lines[: line - 1] + lines[line:]))
        outcome.notes.append(f"line {line} of {count}: {error.split('error: ')[-1][:110]}")
        self.complete_as_reference(outcome, s)
        return outcome

    def complete_as_reference(self, outcome: Outcome, s: Space) -> None:
        """Re-run until done (a stage may fail a few times): the run must complete and equal the reference."""
        ok, errors = run_to_end(s)
        if not ok:
            outcome.problems.append(f"never completed: {errors[-1]}")
        check_equal(outcome, s.run, self.ref_snapshot)

    def second_writer(self) -> Outcome:
        outcome = Outcome("second-writer")
        s = space(self.workdir, outcome.name, cache_from=self.reference)
        first = start(s)
        lock = s.run / ".lock"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (lock.is_file() and f'"pid": {first.pid}' in lock.read_text()):
            time.sleep(0.5)
        second_space = Space(s.results, s.cache, "second-writer.log")
        t0 = time.perf_counter()
        rc, tail = finish(start(second_space), second_space, timeout=120)
        took = time.perf_counter() - t0
        if rc == 0 or f"pid {first.pid}" not in tail:
            outcome.problems.append(f"the second writer was not refused naming pid {first.pid}: rc {rc}")
        outcome.notes.append(f"refused in {took:.0f} s: {last_error(tail).split('error: ')[-1][:100]}")
        rc, _ = finish(first, s)
        if rc != 0:
            outcome.problems.append(f"the first writer failed (rc {rc})")
        check_equal(outcome, s.run, self.ref_snapshot)
        return outcome

    def flip_param(self) -> Outcome:
        outcome = Outcome("flip-param")
        s = space(self.workdir, outcome.name, cache_from=self.reference, results_from=self.reference)
        flipped = s.results.parent / "flipped.yaml"
        text = CI.read_text()
        old = "sampling: {temperature: 1.0, max_tokens: 80}"
        flipped.write_text(text.replace(old, "sampling: {temperature: 0.9, max_tokens: 80}"))
        status = subprocess.run([sys.executable, "-m", "sotopia_pi_lib.pipeline", "--params", str(flipped),
                                 "--run", "ci", "--status"], cwd=ROOT, env=s.env(), capture_output=True, text=True)
        if "01_generate: fresh" not in status.stdout or "params simulation changed" not in status.stdout:
            outcome.problems.append(f"--status did not name the stale stages: {status.stdout[-300:]}")
        old_ids = {json.loads(x)["episode_id"] for f in (s.run / "02_collect").glob("*.episodes.jsonl")
                   for x in f.read_text().splitlines() if x.strip()}
        ok, errors = run_to_end(s, flipped)
        new_ids = {json.loads(x)["episode_id"] for f in (s.run / "02_collect").glob("*.episodes.jsonl")
                   for x in f.read_text().splitlines() if x.strip()}
        if not ok or old_ids & new_ids or not new_ids:
            outcome.problems.append(f"flipped run reused or lost episodes (ok={ok}, {len(old_ids & new_ids)} reused)")
        ok, errors = run_to_end(s)
        if not ok:
            outcome.problems.append(f"flipped back, never completed: {errors[-1]}")
        check_equal(outcome, s.run, self.ref_snapshot)
        outcome.notes.append("--status named 02-06 stale; no old episode reused; flipped back equals the start")
        return outcome

    def server(self) -> list[Outcome]:
        quota, faults = Outcome("server-quota"), Outcome("server-faults")
        with FaultyServer(self.rng.randrange(2**31)) as srv:
            s = space(self.workdir, "server")
            params = s.results.parent / "ci-openai.yaml"
            params.write_text(srv.params(CI.read_text()))
            srv.mode = "quota"
            rc, tail = run_once(s, params)
            if rc == 0 or "insufficient_quota" not in tail or (s.run / "01_generate" / "_done.json").exists():
                quota.problems.append(f"expected a stop naming insufficient_quota, got rc {rc}: {last_error(tail)}")
            quota.notes.append(f"stopped after {srv.counts['quota']} request(s): "
                               f"{last_error(tail).split('error: ')[-1][-120:]}")
            srv.mode = "faults"
            ok, errors = run_to_end(s, params, attempts=8)
            injected = ", ".join(f"{k} {v}" for k, v in sorted(srv.counts.items()) if k not in ("quota", "none"))
            faults.notes.append(f"injected {injected}; {len(errors)} stage failure(s) before completing"
                                + (f" (e.g. {errors[0].split('error: ')[-1][:90]})" if errors else ""))
            if not ok:
                faults.problems.append(f"never completed: {errors[-1]}")
            srv.mode = "refuse"  # the uninterrupted run: only what the fault run's cache holds
            replay = space(self.workdir, "server-replay", cache_from=s)
            if not run_to_end(replay, params, attempts=1)[0]:
                faults.problems.append("the replay run failed")
            final = snapshot(replay.run)
            for outcome in (quota, faults):
                check_equal(outcome, s.run, final)
        return [quota, faults]


class FaultyServer:
    """The project's OpenAI-compatible server over the embedded model, in this process, with a mode:
    `quota` answers every chat request with insufficient_quota, `faults` injects 429 / 500 / timeouts /
    garbage at seeded random, `refuse` answers every chat request 400 (a replay that must find all in
    its cache), `clean` serves. /v1/models always answers, so clients key their caches the same way."""

    RATES = (("429", 0.05), ("500", 0.05), ("timeout", 0.01), ("garbage-body", 0.03), ("garbage-json", 0.03))
    TIMEOUT_S = 90  # the clients' timeout; an injected timeout holds the request a little longer

    def __init__(self, seed: int) -> None:
        self.rng, self.mode, self.counts = random.Random(seed), "clean", {}
        self.server: Any = None

    def __enter__(self) -> FaultyServer:
        from starlette.responses import JSONResponse, Response

        from sotopia_pi_lib.llm.registry import build_llm
        from sotopia_pi_lib.llm.server import BackgroundServer, create_app

        app = create_app(build_llm({"backend": "hf", "model": "embedded"}, cache=None), model_name="embedded")

        @app.middleware("http")
        async def inject(request: Any, call_next: Any) -> Any:
            if not request.url.path.endswith("/chat/completions") or self.mode == "clean":
                return await call_next(request)
            fault = self._draw()
            self.counts[fault] = self.counts.get(fault, 0) + (fault != "none")
            if fault == "quota":
                return JSONResponse({"error": {"message": "You exceeded your current quota.", "type":
                                     "insufficient_quota", "code": "insufficient_quota"}}, status_code=429)
            if fault == "refuse":
                return JSONResponse({"error": {"message": "not in the cache"}}, status_code=400)
            if fault in ("429", "500"):
                return JSONResponse({"error": {"message": f"injected {fault}"}}, status_code=int(fault),
                                    headers={"retry-after-ms": "200"})
            if fault == "timeout":
                import asyncio

                await asyncio.sleep(self.TIMEOUT_S + 5)
            if fault == "garbage-body":
                return Response(b"<html>502 Bad Gateway</html>", status_code=200, media_type="text/html")
            response = await call_next(request)
            if fault == "garbage-json":
                body = {"id": "x", "object": "chat.completion", "created": 0, "model": "embedded",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "Sure! Happy to help."}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                return JSONResponse(body)
            return response

        self.server = BackgroundServer(app).start()
        return self

    def _draw(self) -> str:
        if self.mode in ("quota", "refuse"):
            return self.mode
        x = self.rng.random()
        for fault, rate in self.RATES:
            if x < rate:
                return fault
            x -= rate
        return "none"

    def params(self, ci_text: str) -> str:
        """The ci params with every role but the trained policy behind this server."""
        spec = (f'{{backend: openai, model: embedded, options: {{base_url: "{self.server.base_url}", '
                f"timeout_s: {self.TIMEOUT_S}, max_retries: 5, max_concurrency: 8}}}}")
        for role in ("task_generator", "expert", "partner", "judge"):
            ci_text = re.sub(rf"^  {role}: .*$", f"  {role}: {spec}", ci_text, flags=re.M)
        return ci_text

    def __exit__(self, *_: object) -> None:
        self.server.stop()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=10, help="kill points on a warm cache (>= 10 for the issue)")
    p.add_argument("--cold-kills", type=int, default=2, help="kill points on a cold cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder (kept)")
    p.add_argument("--only", default="", help="comma-separated fault name prefixes, e.g. kill-warm,flip")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sotopia-faults-"))
    bench = Bench(workdir, random.Random(args.seed))
    print(f"fault benchmark on the ci profile, seed {args.seed}, work folder {workdir}", flush=True)
    print(f"tolerances: floats rel {REL} abs {ABS}; adapter weights rel {REL} abs {WEIGHT_ABS}", flush=True)
    t0 = time.perf_counter()
    base = bench.prepare()
    print(base.line(), flush=True)
    if base.problems:
        return 1
    plan: list[tuple[str, Callable[[], Outcome | list[Outcome]]]] = []
    plan += [(f"kill-warm-{k}", lambda k=k: bench.kill(k, cold=False)) for k in range(1, args.kills + 1)]
    plan += [(f"kill-cold-{k}", lambda k=k: bench.kill(k, cold=True)) for k in range(1, args.cold_kills + 1)]
    plan += [("corrupt-rewritten", bench.corrupt_rewritten), ("corrupt-append-only", bench.corrupt_append_only),
             ("second-writer", bench.second_writer), ("flip-param", bench.flip_param), ("server", bench.server)]
    wanted = [w for w in args.only.split(",") if w]
    outcomes: list[Outcome] = []
    for name, fault in plan:
        if wanted and not any(name.startswith(w) for w in wanted):
            continue
        result = fault()
        for outcome in result if isinstance(result, list) else [result]:
            print(outcome.line(), flush=True)
            outcomes.append(outcome)
    survived = sum(not o.problems for o in outcomes)
    print(f"faults survived: {survived}/{len(outcomes)} ({(time.perf_counter() - t0) / 60:.0f} min)")
    return 0 if survived == len(outcomes) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
