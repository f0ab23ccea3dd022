"""Shared fixtures: the real SOTOPIA data and the real embedded model (built once by `make model`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotopia_pi_lib.data import SotopiaData, ensure_embedded_model, load_sotopia

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def sotopia() -> SotopiaData:
    return load_sotopia()


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The saved embedded model folder; built on first use (about 25 s) if `make model` has not run."""
    return ensure_embedded_model()
