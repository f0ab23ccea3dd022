"""One writer per run: a second writer stops at once naming the holder, a dead holder's lock is taken
over, the runner's own stage kernels work under its lock, and an orphaned stage kernel is waited for.
Holders are real processes (flock is per process), started with a small script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sotopia_pi_lib.pipeline.context import open_stage
from sotopia_pi_lib.pipeline.runner import run_pipeline
from sotopia_pi_lib.store import lock as lock_mod
from sotopia_pi_lib.store.lock import RunLock, RunLocked, enter_stage, read_holder

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sotopia_pi_lib.store.lock import RunLock, enter_stage
    root = Path(sys.argv[1])
    if sys.argv[2] == "runner":
        print(RunLock(root).acquire().token, flush=True)
    else:  # a stage kernel of the runner whose token is in SOTOPIA_PI_RUN_LOCK
        print("inside" if enter_stage(root) is None else "own lock", flush=True)
    time.sleep(60)
""")


def hold(root: Path, role: str = "runner", env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root), role], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    return proc, proc.stdout.readline().strip()


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_second_writer_stops_at_once_naming_the_holder(tmp_path, monkeypatch):
    root = tmp_path / "results" / "ci"
    holder, _ = hold(root)
    try:
        with pytest.raises(RunLocked, match=rf"pid {holder.pid} on .*started 20"):
            RunLock(root).acquire()
        monkeypatch.setenv("SOTOPIA_PI_RESULTS", str(tmp_path / "results"))
        with pytest.raises(RunLocked, match=f"pid {holder.pid}"):  # `make all` on the same run
            run_pipeline("params/ci.yaml", stages=["06_analysis"])
        with pytest.raises(RunLocked, match=f"pid {holder.pid}"):  # a notebook opened in JupyterLab
            open_stage("06_analysis", "params/ci.yaml")
        assert not (root / "manifest.json").exists()  # refused before writing anything
    finally:
        kill(holder)


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, caplog):
    root = tmp_path / "run"
    holder, _ = hold(root)
    kill(holder)  # kill -9: no clean-up ran, its holder record is still in the file
    assert read_holder(root / ".lock").pid == holder.pid
    lock = RunLock(root).acquire()
    assert read_holder(root / ".lock").pid == os.getpid()
    assert f"taking over the lock last held by pid {holder.pid}" in caplog.text
    lock.release()
    assert read_holder(root / ".lock") is None


def test_stage_kernels_of_the_runner_work_under_its_lock(tmp_path, monkeypatch):
    root = tmp_path / "run"
    runner, token = hold(root)
    try:
        monkeypatch.setenv(lock_mod.TOKEN_ENV, token)
        assert enter_stage(root) is None  # no deadlock: the runner's token lets its child in
        monkeypatch.setenv(lock_mod.TOKEN_ENV, "someone-else")
        with pytest.raises(RunLocked):
            enter_stage(root)
    finally:
        kill(runner)
        for fd in lock_mod._stage_fds.values():
            os.close(fd)
        lock_mod._stage_fds.clear()


def test_an_orphaned_stage_kernel_of_a_killed_runner_is_waited_for(tmp_path, monkeypatch):
    """The runner is killed while its stage kernel still runs: the next writer must not start beside it."""
    root = tmp_path / "run"
    runner, token = hold(root)
    child, said = hold(root, "stage", {lock_mod.TOKEN_ENV: token})
    assert said == "inside"
    kill(runner)
    monkeypatch.setattr(lock_mod, "CHILD_WAIT_S", 0.5)
    try:
        with pytest.raises(RunLocked, match=f"stage kernel of an earlier run .*pid {child.pid}"):
            RunLock(root).acquire()
    finally:
        kill(child)
    RunLock(root).acquire().release()  # once it is gone, the run is free


def test_the_runner_removes_the_stage_files_of_exited_kernels_when_it_lets_go(tmp_path):
    root = tmp_path / "run"
    lock = RunLock(root).acquire()
    env = {lock_mod.TOKEN_ENV: lock.token}
    done, said = hold(root, "stage", env)
    assert said == "inside"
    running, _ = hold(root, "stage", env)
    kill(done)
    try:
        assert {p.name for p in root.glob(".lock.stage-*")} == {f".lock.stage-{done.pid}", f".lock.stage-{running.pid}"}
        lock.release()
        assert [p.name for p in root.glob(".lock.stage-*")] == [f".lock.stage-{running.pid}"]  # still held
    finally:
        kill(running)
