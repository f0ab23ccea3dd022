"""Where the project keeps its ignored folders (data, models, results).

The root is the checkout when the package is installed editable (the normal case), so notebooks find
the same folders from any working directory. `SOTOPIA_PI_ROOT` overrides it for installed copies.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    env = os.environ.get("SOTOPIA_PI_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


def data_dir() -> Path:
    return project_root() / "data"


def models_dir() -> Path:
    return project_root() / "models"


def results_dir() -> Path:
    """`results/` of the project, or `SOTOPIA_PI_RESULTS` (tests run the pipeline into a temp folder)."""
    env = os.environ.get("SOTOPIA_PI_RESULTS")
    return Path(env).resolve() if env else project_root() / "results"


def shared_data_dir() -> Path:
    """`../shared/data` beside the checkout, where this workplace keeps the public data files."""
    return project_root().parent / "shared" / "data"
