"""Is a stage's output still what its inputs make? Freshness by content, as `make -n` or `dvc status`.

A stage's `_done.json` records, besides its outputs' sha256, what the stage was made from: the hash of
each params block it reads (`STAGE_READS`), of each earlier stage's outputs, of the library (package
version and a hash of the `sotopia_pi_lib` source tree) and of its notebook's cells. A stage is stale
when any of those differ now, or an output was changed or deleted, and so is every later stage. File
times play no part: touching a file changes nothing, editing one value in the params does.

A param block a stage does not read never makes it stale (changing the MMLU subset does not re-run the
simulation). When a stage starts reading another block, add it to `STAGE_READS`; a stage that reads a
block not listed would not be re-run when that block changes.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from ..config import StudyConfig
from ..paths import project_root
from ..store.keys import content_hash
from ..store.run import STAGES, RunPaths, read_marker, stage_problems

# The params each stage reads: a block (`simulation`) or one entry of it (`models.judge`, `run.seed`).
STAGE_READS: dict[str, tuple[str, ...]] = {
    "01_generate": ("run.seed", "models.task_generator", "generate", "collect"),
    "02_collect": ("run.seed", "models.expert", "models.policy", "models.judge", "simulation", "judge",
                   "collect"),
    "03_filter": ("models.policy", "simulation", "collect", "filter", "train"),
    "04_train": ("run.seed", "models.policy", "models.judge", "simulation", "judge", "collect", "filter",
                 "train"),
    "05_evaluate": ("models.policy", "models.expert", "models.partner", "models.judge", "simulation",
                    "judge", "evaluate", "mmlu"),
    "06_analysis": ("run.seed", "evaluate", "mmlu", "judge"),
}
LIBRARY_SUFFIXES = (".py", ".html", ".json", ".yaml")


def notebook_path(stage: str) -> Path:
    return project_root() / "notebooks" / f"{stage}.ipynb"


def param_hashes(cfg: StudyConfig, stage: str) -> dict[str, str]:
    """Hash of each params entry `stage` reads."""
    dumped = cfg.model_dump(mode="json")
    out = {}
    for path in STAGE_READS[stage]:
        node: Any = dumped
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[path] = content_hash(node)
    return out


@lru_cache(maxsize=1)
def library_identity() -> dict[str, str]:
    """Package version and a hash of the library's source files (caches and compiled files excluded)."""
    package = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for f in sorted(package.rglob("*")):
        if f.is_file() and f.suffix in LIBRARY_SUFFIXES and "__pycache__" not in f.parts:
            h.update(f"{f.relative_to(package).as_posix()}\n".encode())
            h.update(f.read_bytes())
    try:
        version = metadata.version("sotopia-pi-lib")
    except metadata.PackageNotFoundError:
        from .. import __version__ as version
    return {"version": version, "source": h.hexdigest()}


def notebook_hash(stage: str) -> str:
    """The notebook's cells (type and source), not its outputs or metadata."""
    path = notebook_path(stage)
    if not path.is_file():
        return ""
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    return content_hash([[c.get("cell_type"), "".join(c.get("source", ""))] for c in cells])


def outputs_hash(paths: RunPaths, stage: str) -> str | None:
    """Hash of a finished stage's output list (None when it has not finished)."""
    marker = read_marker(paths, stage)
    return content_hash(marker["outputs"]) if marker else None


def stage_inputs(cfg: StudyConfig, paths: RunPaths, stage: str) -> dict[str, Any]:
    """What `stage` is made from, as recorded in its `_done.json` (taken when the stage starts)."""
    upstream = {s: outputs_hash(paths, s) for s in STAGES[: STAGES.index(stage)]}
    return {"params": param_hashes(cfg, stage), "upstream": upstream, "library": library_identity(),
            "notebook": notebook_hash(stage)}


def stale_reasons(paths: RunPaths, stage: str, cfg: StudyConfig) -> list[str]:
    """Why `stage` must (re)run; empty when it is fresh. Reads files only: never writes."""
    problems = stage_problems(paths, stage)
    if problems:
        return problems
    recorded = (read_marker(paths, stage) or {}).get("inputs")
    if not recorded:
        return [f"{stage}: finished before inputs were recorded"]
    now = stage_inputs(cfg, paths, stage)
    reasons = [f"{stage}: params {k} changed" for k, v in now["params"].items()
               if recorded.get("params", {}).get(k) != v]
    reasons += [f"{stage}: outputs of {s} changed since it ran" for s, v in now["upstream"].items()
                if recorded.get("upstream", {}).get(s) != v]
    old_lib = recorded.get("library", {})
    if old_lib.get("version") != now["library"]["version"]:
        reasons.append(f"{stage}: library version {old_lib.get('version')} -> {now['library']['version']}")
    elif old_lib.get("source") != now["library"]["source"]:
        reasons.append(f"{stage}: library source changed (sotopia_pi_lib)")
    if recorded.get("notebook") != now["notebook"]:
        reasons.append(f"{stage}: notebook {notebook_path(stage).name} changed")
    return reasons


def pipeline_status(paths: RunPaths, cfg: StudyConfig) -> list[tuple[str, list[str]]]:
    """(stage, reasons) for every stage in order; a stage after a stale one is stale too."""
    out: list[tuple[str, list[str]]] = []
    first_stale = None
    for stage in STAGES:
        reasons = stale_reasons(paths, stage, cfg)
        if not reasons and first_stale is not None:
            reasons = [f"{stage}: an earlier stage ({first_stale}) is stale"]
        first_stale = first_stale or (stage if reasons else None)
        out.append((stage, reasons))
    return out
