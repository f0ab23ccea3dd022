"""The layout of a run folder, `results/<run>/`: the only channel between stages.

Each stage writes under its own sub-folder and finishes by writing `_done.json` listing its output
files with their sha256 and what it was made from (see `pipeline.freshness`); a stage counts as
complete only while that marker exists and every listed file is still there unchanged, so deleting a
file from the middle of a run re-runs its stage.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import results_dir
from .files import atomic_write_text, sha256_file

STAGES = ("01_generate", "02_collect", "03_filter", "04_train", "05_evaluate", "06_analysis")
_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def safe_name(label: str) -> str:
    """A model label or task-set name as a file-name part (e.g. 'hf:embedded+bc' -> 'hf_embedded+bc')."""
    return _SAFE.sub("_", label).strip("_")


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @classmethod
    def for_run(cls, name: str, base: Path | None = None) -> RunPaths:
        return cls((base or results_dir()) / name)

    def stage_dir(self, stage: str) -> Path:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        return self.root / stage

    # 01 task generation
    @property
    def tasks(self) -> Path:
        return self.stage_dir("01_generate") / "tasks.jsonl"

    @property
    def rejected_tasks(self) -> Path:
        return self.stage_dir("01_generate") / "rejected.jsonl"

    # 02 collection (and the self-play rounds of BC+SR, which 04 runs)
    def episodes(self, source: str, round_: int) -> Path:
        return self.stage_dir("02_collect") / f"{safe_name(source)}_round{round_}.episodes.jsonl"

    def ratings(self, source: str, round_: int) -> Path:
        return self.stage_dir("02_collect") / f"{safe_name(source)}_round{round_}.ratings.jsonl"

    # 03 filtering
    def sft(self, source: str, round_: int) -> Path:
        return self.stage_dir("03_filter") / f"{safe_name(source)}_round{round_}.sft.jsonl"

    # 04 training
    def adapter(self, name: str) -> Path:
        return self.stage_dir("04_train") / safe_name(name)

    # 05 evaluation
    def eval_episodes(self, model: str, task_set: str) -> Path:
        return self.stage_dir("05_evaluate") / f"{safe_name(model)}__{safe_name(task_set)}.episodes.jsonl"

    def eval_ratings(self, model: str, task_set: str) -> Path:
        return self.stage_dir("05_evaluate") / f"{safe_name(model)}__{safe_name(task_set)}.ratings.jsonl"

    def compliance(self, model: str) -> Path:
        return self.stage_dir("05_evaluate") / f"safety__{safe_name(model)}.compliance.jsonl"

    def mmlu(self, model: str) -> Path:
        return self.stage_dir("05_evaluate") / f"mmlu__{safe_name(model)}.jsonl"

    @property
    def released_ratings(self) -> Path:
        """The study's judge on SOTOPIA-pi's released human-evaluation episodes (the episodes themselves
        are read from the release, not copied into the run)."""
        return self.stage_dir("05_evaluate") / "released_human_eval.ratings.jsonl"

    # 06 analysis
    @property
    def figures(self) -> Path:
        return self.stage_dir("06_analysis") / "figures"

    @property
    def summary(self) -> Path:
        return self.stage_dir("06_analysis") / "summary.md"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    def done_marker(self, stage: str) -> Path:
        return self.stage_dir(stage) / "_done.json"


def mark_done(paths: RunPaths, stage: str, outputs: list[Path], inputs: dict[str, Any] | None = None,
              extra: dict[str, Any] | None = None) -> Path:
    """Record that `stage` finished: the sha256 of every output file (folders: every file), what it was
    made from (`inputs`, see pipeline.freshness) and anything else worth keeping (`extra`)."""
    files: dict[str, str] = {}
    for p in outputs:
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                files[str(f.relative_to(paths.root))] = sha256_file(f)
    record = {"stage": stage, "outputs": files, "inputs": inputs or {}, **(extra or {})}
    return atomic_write_text(paths.done_marker(stage), json.dumps(record, indent=1))


def read_marker(paths: RunPaths, stage: str) -> dict[str, Any] | None:
    """A stage's `_done.json` (None when missing or unreadable)."""
    try:
        marker = json.loads(paths.done_marker(stage).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("outputs"), dict) else None


def stage_problems(paths: RunPaths, stage: str) -> list[str]:
    """Why `stage` is not complete (empty list: complete)."""
    marker = paths.done_marker(stage)
    if not marker.is_file():
        return [f"{stage}: not finished ({marker} missing)"]
    record = read_marker(paths, stage)
    if record is None:
        return [f"{stage}: unreadable marker {marker}"]
    outputs = record["outputs"]
    problems = []
    for rel, digest in outputs.items():
        f = paths.root / rel
        if not f.is_file():
            problems.append(f"{stage}: output {rel} was deleted")
        elif sha256_file(f) != digest:
            problems.append(f"{stage}: output {rel} changed since the stage finished")
    return problems
