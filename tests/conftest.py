"""Shared fixtures: the real SOTOPIA data and the real embedded model (built once by `make model`)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sotopia_pi_lib.data import SotopiaData, ensure_embedded_model, load_sotopia
from sotopia_pi_lib.official import official_available, sotopia_python

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def sotopia() -> SotopiaData:
    return load_sotopia()


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The saved embedded model folder; built on first use (about 25 s) if `make model` has not run."""
    return ensure_embedded_model()


@pytest.fixture(scope="session")
def official_probe() -> Callable[[dict], dict]:
    """SOTOPIA's own environment on scripted inputs (tests/official/probe.py, run in .venv-sotopia);
    the test is skipped where `make sotopia` has not run."""
    if not official_available():
        pytest.skip("the official sotopia environment is not installed: run `make sotopia`")

    def run(payload: dict) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONWARNINGS": "ignore"}
        done = subprocess.run([str(sotopia_python()), str(FIXTURES.parent / "official" / "probe.py")],
                              input=json.dumps(payload), capture_output=True, text=True, env=env, timeout=300)
        if done.returncode != 0:
            raise AssertionError(f"the official probe failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout)

    return run


# The longest tests (the end-to-end run, then the other slow ones) go first: with `pytest -n 2`
# (make test) one worker runs them while the other takes the rest, instead of one long test last.
FIRST = ("tests/test_notebooks_rehearsal.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        if item.nodeid.startswith(FIRST):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)  # stable: the order within each rank is kept
