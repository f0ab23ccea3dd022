"""The official sotopia environment (`make sotopia`) is found and runs worker scripts."""

from __future__ import annotations

import subprocess

import pytest

from sotopia_pi_lib.errors import BackendError, ConfigError
from sotopia_pi_lib.official import SOTOPIA_VERSION, official_available, run_official, runtime

needs_official = pytest.mark.skipif(not official_available(), reason="run `make sotopia` first")


@needs_official
def test_the_pinned_version_imports_every_module_used():
    out = run_official("version", {})
    assert out["sotopia"] == SOTOPIA_VERSION
    assert out["python"].startswith("3.11.")


def test_missing_environment_names_the_make_target(monkeypatch, tmp_path):
    monkeypatch.setenv("SOTOPIA_PI_SOTOPIA_PYTHON", str(tmp_path / "nope" / "python"))
    assert not official_available()
    with pytest.raises(ConfigError, match="make sotopia"):
        run_official("version", {})


@needs_official
def test_a_failing_script_reports_its_stderr(monkeypatch, tmp_path):
    (tmp_path / "boom.py").write_text("import sys\nsys.stderr.write('kaput')\nsys.exit(3)\n")
    monkeypatch.setattr(runtime, "SCRIPTS", tmp_path)
    with pytest.raises(BackendError, match="(?s)exit 3.*kaput"):
        run_official("boom", {})


ECHO = """
import json, sys
config = json.loads(sys.stdin.readline())
print(json.dumps({"hello": {"config": config}}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    if job.get("die"):
        sys.stderr.write("dying as asked\\n")
        sys.exit(5)
    print(json.dumps({"id": job["id"], "twice": job["n"] * 2}), flush=True)
"""


@needs_official
def test_a_worker_answers_each_job_and_stops_at_the_end_of_its_input(monkeypatch, tmp_path):
    (tmp_path / "echo.py").write_text(ECHO)
    monkeypatch.setattr(runtime, "SCRIPTS", tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-user-secret")
    with runtime.Worker("echo", {"x": 1}) as worker:
        assert worker.hello == {"config": {"x": 1}}
        for n in range(3):
            worker.send({"id": str(n), "n": n})
        assert sorted(worker.next()["twice"] for _ in range(3)) == [0, 2, 4]
        worker.end_input()
        with pytest.raises(BackendError, match="exited"):
            worker.next()
    assert worker.proc.returncode == 0
    assert "OPENAI_API_KEY" not in runtime._worker_env(None)  # the worker never sees the user's credentials
    assert runtime._worker_env(None)["PYTHONHASHSEED"] == runtime.HASH_SEED


@needs_official
def test_a_dying_worker_is_an_error_with_its_last_words(monkeypatch, tmp_path):
    (tmp_path / "echo.py").write_text(ECHO)
    monkeypatch.setattr(runtime, "SCRIPTS", tmp_path)
    with runtime.Worker("echo", {}, timeout_s=30) as worker:
        worker.send({"id": "1", "die": True})
        with pytest.raises(BackendError, match="(?s)exited \\(code 5\\).*dying as asked"):
            worker.next()


@needs_official
def test_a_silent_worker_times_out(monkeypatch, tmp_path):
    (tmp_path / "mute.py").write_text("import sys, time\nsys.stdin.readline()\ntime.sleep(60)\n")
    monkeypatch.setattr(runtime, "SCRIPTS", tmp_path)
    started, popen = [], subprocess.Popen
    monkeypatch.setattr(runtime.subprocess, "Popen", lambda *a, **k: started.append(popen(*a, **k)) or started[-1])
    with pytest.raises(BackendError, match="printed nothing for 1 s"):
        runtime.Worker("mute", {}, timeout_s=1)
    assert started[0].poll() is not None  # not left running
