"""SOTOPIA's own code, run out of process.

The official `sotopia` package at the version SOTOPIA-pi ran (0.0.6) needs pydantic 1 and openai 0.28,
which cannot share an environment with this project, so it lives in `.venv-sotopia` (`make sotopia`)
and is driven through small worker scripts that read JSON on stdin and write JSON on stdout. The
scripts import only `sotopia` and the standard library; nothing of the package's text is copied here.
"""

from .runtime import SOTOPIA_VERSION, official_available, run_official, sotopia_python

__all__ = ["SOTOPIA_VERSION", "official_available", "run_official", "sotopia_python"]
