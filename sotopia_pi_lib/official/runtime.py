"""Find the official sotopia environment and run worker scripts in it: one-shot (`run_official`) or
long-running (`Worker`, JSON lines both ways)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError
from ..paths import project_root

SOTOPIA_VERSION = "0.0.6"
SCRIPTS = Path(__file__).parent / "scripts"
_ENV = "SOTOPIA_PI_SOTOPIA_PYTHON"
# The package lists an agent's available action types in the iteration order of a Python set
# (ParallelSotopiaEnv: `list(available_action_types)`), which follows the process's string-hash seed,
# so the agent prompt changes from one process to the next. Under this seed the order is the one in
# SOTOPIA-pi's released training prompts, "none action speak non-verbal communication leave";
# tests/test_official_style.py pins it.
HASH_SEED = "258"


def sotopia_python() -> Path | None:
    """The interpreter of the official environment: `$SOTOPIA_PI_SOTOPIA_PYTHON`, else
    `.venv-sotopia/bin/python` under the project root; None when neither exists."""
    given = os.environ.get(_ENV)
    path = Path(given) if given else project_root() / ".venv-sotopia" / "bin" / "python"
    return path if path.is_file() else None


def official_available() -> bool:
    return sotopia_python() is not None


def require_sotopia_python() -> Path:
    path = sotopia_python()
    if path is None:
        raise ConfigError(
            f"the official sotopia package is not installed: run `make sotopia` (creates .venv-sotopia "
            f"with sotopia=={SOTOPIA_VERSION}) or point {_ENV} at a Python that has it"
        )
    return path


def run_official(script: str, payload: Any, timeout_s: float = 300.0, env: dict[str, str] | None = None) -> Any:
    """Run `scripts/<script>.py` in the official environment with `payload` as JSON on stdin and
    return the JSON it prints. A failing script is a BackendError carrying the end of its stderr."""
    python = require_sotopia_python()
    path = SCRIPTS / f"{script}.py"
    if not path.is_file():
        raise ConfigError(f"no official worker script {path}")
    try:
        done = subprocess.run([str(python), str(path)], input=json.dumps(payload), capture_output=True,
                              text=True, timeout=timeout_s, env=_worker_env(env), check=False)
    except subprocess.TimeoutExpired:
        raise BackendError(f"official worker {script} did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        raise BackendError(f"official worker {script} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise BackendError(f"official worker {script} printed no JSON: {done.stdout[-500:]!r}") from None


def _worker_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The worker's environment: the project's packages off its path, and no OpenAI credentials or
    endpoints of the user's (the worker only ever talks to the project's local server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_") and k != "PYTHONPATH"}
    return {**env, "PYTHONWARNINGS": "ignore", "PYTHONHASHSEED": HASH_SEED, **(extra or {})}


class Worker:
    """A long-running worker script of the official environment, talking JSON lines.

    The first line sent is the script's configuration, answered by one `hello` object; then each
    `send(job)` gets one result line back, in finishing order, read with `results()`. Both output
    streams are drained by threads, so a chatty package never blocks the worker on a full pipe.
    """

    def __init__(self, script: str, config: Any, *, timeout_s: float = 600.0) -> None:
        python = require_sotopia_python()
        path = SCRIPTS / f"{script}.py"
        if not path.is_file():
            raise ConfigError(f"no official worker script {path}")
        self.script, self.timeout_s = script, timeout_s
        self.proc = subprocess.Popen(
            [str(python), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, env=_worker_env(None),
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: deque[str] = deque(maxlen=200)
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr.append), daemon=True).start()
        try:
            self.send(config)
            self.hello = self.next().get("hello")
            if self.hello is None:
                raise BackendError(f"official worker {script} did not introduce itself")
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    @staticmethod
    def _drain(stream: Any, put: Any) -> None:
        for line in stream:
            put(line)
        put(None)

    def _died(self, what: str) -> BackendError:
        tail = "".join(line for line in self.stderr if line)[-3000:]
        return BackendError(f"official worker {self.script} {what}; its last output:\n{tail}")

    def send(self, obj: Any) -> None:
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died(f"exited (code {self.proc.poll()})") from None

    def end_input(self) -> None:
        """No more jobs: the worker finishes the running ones and exits."""
        if not self.proc.stdin.closed:
            self.proc.stdin.close()

    def next(self) -> dict[str, Any]:
        """The next line the worker prints (a BackendError if it dies or is silent past the timeout)."""
        try:
            line = self.lines.get(timeout=self.timeout_s)
        except queue.Empty:
            raise self._died(f"printed nothing for {self.timeout_s:.0f} s") from None
        if line is None:
            self.lines.put(None)  # stay at the end for any later call
            raise self._died(f"exited (code {self.proc.wait()})")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise self._died(f"printed a line that is not JSON: {line[:200]!r}") from None

    def close(self) -> None:
        """End the input and give running jobs a moment to finish, then stop the process."""
        self.end_input()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
