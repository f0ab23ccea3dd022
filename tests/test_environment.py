"""The conda environment, pyproject.toml and constraints.txt describe the same stack."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _conda_pip() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {_name(r): r.split("==")[1] for r in pip}


def _constraints() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            out[_name(name)] = version.strip()
    return out


def test_every_core_dependency_is_in_the_conda_environment():
    core = {_name(d) for d in _pyproject()["dependencies"]}
    assert core - set(_conda_pip()) == set()


def test_conda_versions_match_the_tested_constraints():
    pins = _constraints()
    conda = _conda_pip()
    assert {n: v for n, v in conda.items() if pins.get(n) != v} == {}


def test_every_dependency_is_pinned_in_constraints():
    project = _pyproject()
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    assert {_name(d) for d in wanted} - set(_constraints()) == set()


def test_torch_is_pinned_for_the_cpu_path():
    assert "torch==2.13.0" in _pyproject()["dependencies"]
    assert _constraints()["torch"] == "2.13.0"
