"""Find the official sotopia environment and run a worker script in it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError
from ..paths import project_root

SOTOPIA_VERSION = "0.0.6"
SCRIPTS = Path(__file__).parent / "scripts"
_ENV = "SOTOPIA_PI_SOTOPIA_PYTHON"


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
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    full_env.pop("PYTHONPATH", None)  # the project's own packages must not shadow the official ones
    try:
        done = subprocess.run([str(python), str(path)], input=json.dumps(payload), capture_output=True,
                              text=True, timeout=timeout_s, env=full_env, check=False)
    except subprocess.TimeoutExpired:
        raise BackendError(f"official worker {script} did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        raise BackendError(f"official worker {script} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise BackendError(f"official worker {script} printed no JSON: {done.stdout[-500:]!r}") from None
