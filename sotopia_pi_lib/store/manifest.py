"""A manifest per run: what produced `results/<run>/`, so any number can be traced and repeated.

It records the resolved params (secrets never: keys are read from the environment and never put in
params), git commit and dirty flag, package versions, hardware, per-stage timings and LLM usage, and
the sha256 of every data file and adapter a stage used. Every update is an atomic rewrite.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ..paths import project_root
from ..redact import register_from_params, scrub
from .files import atomic_write_text, sha256_file

PACKAGES = ("sotopia-pi-lib", "torch", "transformers", "peft", "trl", "bitsandbytes", "xgrammar",
            "openai", "vllm", "pydantic", "pandas", "scipy", "papermill")


class StageRecord(BaseModel):
    name: str
    status: str = "running"
    started: str
    finished: str | None = None
    duration_s: float | None = None
    llm_usage: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per role")
    inputs: dict[str, str] = Field(default_factory=dict, description="path -> sha256")
    outputs: dict[str, str] = Field(default_factory=dict, description="path -> sha256")
    notes: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    run: str
    created: str
    params_file: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    git_commit: str | None = None
    git_dirty: bool | None = None
    python: str = platform.python_version()
    packages: dict[str, str] = Field(default_factory=dict)
    hardware: dict[str, Any] = Field(default_factory=dict)
    stages: dict[str, StageRecord] = Field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_state(root: Path | None = None) -> tuple[str | None, bool | None]:
    root = root or project_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, check=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return None, None


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "cpus": os.cpu_count(), "system": platform.system()}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


def scrub_secrets(obj: Any) -> Any:
    """Params as the manifest may hold them: secret-named fields, the values of the env vars the
    params name in `api_key_env` (and of any *_API_KEY/*TOKEN variable), and key-shaped strings or
    URL passwords are masked (see `sotopia_pi_lib.redact`). Params should hold none; this is the guard."""
    register_from_params(obj)
    return scrub(obj)


def manifest_path(run_dir: Path) -> Path:
    return Path(run_dir) / "manifest.json"


def load_manifest(run_dir: Path) -> Manifest | None:
    path = manifest_path(run_dir)
    if not path.is_file():
        return None
    return Manifest.model_validate_json(path.read_text(encoding="utf-8"))


def save_manifest(run_dir: Path, manifest: Manifest) -> Path:
    """Write atomically; every string (params, notes, errors a stage recorded) is scrubbed first."""
    clean = Manifest.model_validate(scrub(manifest.model_dump(mode="json")))
    return atomic_write_text(manifest_path(run_dir), clean.model_dump_json(indent=2))


def init_manifest(run_dir: Path, params: dict[str, Any], params_file: str | None = None) -> Manifest:
    """Create the manifest, or refresh its environment facts (a resumed run keeps its stages)."""
    old = load_manifest(run_dir)
    commit, dirty = git_state()
    m = Manifest(run=Path(run_dir).name, created=old.created if old else _now(), params_file=params_file,
                 params=scrub_secrets(params), git_commit=commit, git_dirty=dirty,
                 packages=package_versions(), hardware=hardware(), stages=old.stages if old else {})
    save_manifest(run_dir, m)
    return m


def file_hashes(paths: list[Path], root: Path) -> dict[str, str]:
    """sha256 of each file (every file of a folder), keyed by its path relative to `root`."""
    out = {}
    for p in paths:
        files = sorted(f for f in Path(p).rglob("*") if f.is_file()) if Path(p).is_dir() else [Path(p)]
        for f in files:
            if f.is_file():
                rel = os.path.relpath(f, root)
                out[rel] = sha256_file(f)
    return out


def begin_stage(run_dir: Path, name: str) -> StageRecord:
    """Record that a stage started (a re-run replaces the stage's earlier record)."""
    m = load_manifest(run_dir) or init_manifest(run_dir, {})
    record = StageRecord(name=name, started=_now())
    m.stages[name] = record
    save_manifest(run_dir, m)
    return record


def end_stage(run_dir: Path, record: StageRecord, status: str = "done") -> StageRecord:
    record.status, record.finished = status, _now()
    started = datetime.fromisoformat(record.started)
    record.duration_s = round((datetime.now(UTC) - started).total_seconds(), 1)
    m = load_manifest(run_dir) or init_manifest(run_dir, {})
    m.stages[record.name] = record
    save_manifest(run_dir, m)
    return record


@contextmanager
def stage(run_dir: Path, name: str):
    """Record a stage's start, end, duration and status; the body fills `record` (usage, files)."""
    record = begin_stage(run_dir, name)
    try:
        yield record
    except BaseException:
        end_stage(run_dir, record, "failed")
        raise
    end_stage(run_dir, record)


def provenance_lines(m: Manifest) -> list[str]:
    """A short human-readable provenance block (notebook 06 prints it)."""
    lines = [f"run {m.run}, created {m.created}, params {m.params_file}",
             f"git {m.git_commit[:10] if m.git_commit else '?'}{' (dirty)' if m.git_dirty else ''}, "
             f"python {m.python}, " + ", ".join(f"{k} {v}" for k, v in m.packages.items() if k != "sotopia-pi-lib"),
             f"hardware: {json.dumps(m.hardware)}"]
    for s in m.stages.values():
        lines.append(f"  {s.name}: {s.status}, {s.duration_s or 0:.0f} s" + "".join(
            f"; {role} {u.get('requests', 0)} requests ({u.get('cached', 0)} cached), "
            f"{u.get('prompt_tokens', 0) + u.get('completion_tokens', 0):,} tokens"
            + (f", ${u['cost_usd']:.2f}" if u.get("cost_usd") else "")
            for role, u in s.llm_usage.items()))
    return lines
