"""Training-side results and the run's provenance, as tidy tables for notebook 06.

- loss curves: `04_train/<adapter>/loss_curve.json` (pi.train_record; the CSV twin is the fallback);
- training data scores: the judge's goal for every (episode, agent) of `02_collect/<source>_round<k>`,
  and whether filtering kept it (it has examples in `03_filter/<source>_round<k>.sft.jsonl`);
- run info: the manifest's provenance block and which model played each role.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import DataError
from ..judge.ratings import EpisodeRating
from ..pi.filtering import score_table
from ..sim.episode import EpisodeRecord
from ..store.jsonl import read_jsonl
from ..store.manifest import Manifest, manifest_path, provenance_lines
from ..store.run import RunPaths
from .results import read_json

LOSS_COLUMNS = ["adapter", "step", "epoch", "loss", "learning_rate"]
# The file names of pi.train_record (LOSS_JSON, LOSS_CSV; a test checks they agree), repeated here
# because importing pi.train_record imports trl and torch, ~5-15 s that figure regeneration need not pay.
LOSS_JSON, LOSS_CSV = "loss_curve.json", "loss_curve.csv"
TRAINING_COLUMNS = ["source", "round", "episode_id", "agent", "goal", "overall", "kept"]
_COLLECTED = re.compile(r"^(?P<source>.+)_round(?P<round>\d+)\.episodes\.jsonl$")
EMBEDDED_HINTS = ("embedded", "smollm2")


def _loss_frame(folder: Path) -> pd.DataFrame:
    """step, epoch, loss, learning_rate of one adapter (the JSON list of LossPoint, else the CSV)."""
    js, csv_path = folder / LOSS_JSON, folder / LOSS_CSV
    if js.is_file():
        raw = read_json(js, "the loss curve")
        if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
            raise DataError(f"{js}: expected a JSON list of loss points ({{step, loss, ...}})")
        frame, where = pd.DataFrame(raw), js
    else:
        frame, where = pd.read_csv(csv_path), csv_path
    if frame.empty:
        return pd.DataFrame(columns=LOSS_COLUMNS[1:])
    if not {"step", "loss"} <= set(frame.columns):
        raise DataError(f"{where}: a loss curve needs step and loss, it has {list(frame.columns)}")
    frame = frame.reindex(columns=LOSS_COLUMNS[1:])
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric[["step", "loss"]].isna().any(axis=1)
    if bad.any():
        raise DataError(f"{where}: point {int(bad.to_numpy().argmax())} has no numeric step or loss")
    return numeric


def load_losses(paths: RunPaths) -> pd.DataFrame:
    """Training loss per step of every adapter under 04_train: adapter, step, epoch, loss, learning_rate."""
    root = paths.stage_dir("04_train")
    rows = []
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in folders:
        if not ((folder / LOSS_JSON).is_file() or (folder / LOSS_CSV).is_file()):
            continue
        rows.append(_loss_frame(folder).assign(adapter=folder.name))
    if not rows:
        return pd.DataFrame(columns=LOSS_COLUMNS)
    return pd.concat(rows, ignore_index=True)[LOSS_COLUMNS]


def _kept_units(path: Path) -> set[tuple[str, int]]:
    """(episode_id, agent) of every example in a training file, read as plain JSON (the prompts are
    long and validated by 03/04; only the two keys matter here)."""
    kept = set()
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ex = json.loads(line)
                kept.add((str(ex["episode_id"]), int(ex["agent"])))
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{path}:{lineno}: a training example needs episode_id and agent") from None
    return kept


def load_training_scores(paths: RunPaths) -> pd.DataFrame:
    """Goal and overall of every collected (episode, agent), one row each: source, round, episode_id,
    agent, goal, overall, kept (True/False after filtering; None when no filtered file exists)."""
    root = paths.stage_dir("02_collect")
    frames = []
    for ep_path in sorted(root.glob("*_round*.episodes.jsonl")) if root.is_dir() else []:
        m = _COLLECTED.match(ep_path.name)
        if not m:
            continue
        source, round_ = m["source"], int(m["round"])
        episodes = read_jsonl(ep_path, EpisodeRecord)
        if not episodes:
            continue
        rt_path = paths.ratings(source, round_)
        try:
            table = score_table(episodes, read_jsonl(rt_path, EpisodeRating))
        except DataError as e:
            raise DataError(
                f"{ep_path}: training data without complete ratings ({rt_path.name}): {e}"
            ) from None
        sft = paths.sft(source, round_)
        if sft.is_file():
            kept = _kept_units(sft)
            table["kept"] = [(e, a) in kept for e, a in zip(table["episode_id"], table["agent"], strict=True)]
        else:
            table["kept"] = None
        frames.append(table.assign(source=source, round=round_))
    if not frames:
        return pd.DataFrame(columns=TRAINING_COLUMNS)
    return pd.concat(frames, ignore_index=True)[TRAINING_COLUMNS]


class RunInfo(BaseModel):
    """What the figures and summary need to know about how the run was made."""

    model_config = ConfigDict(frozen=True)

    run: str
    roles: dict[str, str]  # role -> model label ("hf:embedded", "openai:gpt-4")
    provenance: list[str]
    embedded_roles: list[str]  # roles played by the embedded 135M model


def _role_labels(params: Mapping[str, Any]) -> dict[str, str]:
    roles = params.get("models") or {}
    out = {}
    for role, spec in roles.items():
        if isinstance(spec, Mapping) and "model" in spec:
            out[role] = f"{spec.get('backend', '?')}:{spec['model']}" + (
                f"+{spec['adapter']}" if spec.get("adapter") else ""
            )
    return out


def is_embedded(label: str) -> bool:
    return any(h in label.lower() for h in EMBEDDED_HINTS)


def load_run_info(paths: RunPaths, judges: list[str] | None = None) -> RunInfo:
    """Roles and provenance from manifest.json; without a manifest, the judge labels found in the
    ratings stand in for the roles (so the embedded-model note still appears)."""
    path = manifest_path(paths.root)
    manifest = None
    if path.is_file():
        try:
            manifest = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as e:
            raise DataError(
                f"{path}: not a run manifest ({e.errors()[0]['loc']}: {e.errors()[0]['msg']})"
            ) from None
    if manifest is None:
        roles = {f"judge ({j})": j for j in judges or []}
        provenance = [f"run {paths.root.name}: no manifest.json (provenance unknown)"]
    else:
        roles, provenance = _role_labels(manifest.params), provenance_lines(manifest)
    return RunInfo(
        run=paths.root.name,
        roles=roles,
        provenance=provenance,
        embedded_roles=sorted(r for r, label in roles.items() if is_embedded(label)),
    )
