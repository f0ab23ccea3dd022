"""The paper's published numbers, typed, to draw beside ours (always marked as published).

Two files from `../shared/data/reference/`: SOTOPIA's leaderboard against a GPT-3.5 partner (pinned
by checksum, copied into `data/` by the data fetcher) and the SOTOPIA-pi figures written for this
project from the paper's figure sources (no pinned checksum: read in place, validated by its schema).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from ..data.fetch import verified_path
from ..errors import DataError
from ..paths import shared_data_dir
from .agreement import DIMENSION_RANGES

LEADERBOARD = "reference/sotopia_leaderboard_vs_gpt35.jsonl"
SOTOPIA_PI_REFERENCE = "reference/sotopia_pi_reference.json"

# The leaderboard's column abbreviations, as SOTOPIA's figures write them.
_ABBREVIATIONS = {
    "BEL": "believability", "REL": "relationship", "KNO": "knowledge", "SEC": "secret",
    "SOC": "social_rules", "FIN": "financial_and_material_benefits", "GOAL": "goal",
}
_COLUMN = re.compile(r"^(?P<abbr>[A-Z]+) \[(?P<lo>-?\d+), (?P<hi>-?\d+)\]$")

# The paper's model keys -> this study's model roles, for placing published bars beside ours.
PAPER_MODELS = {"mistral-7b": "base", "sr": "sr", "bc": "bc", "bc+sr": "bc+sr", "gpt-4": "expert"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HardGoalBlock(_Strict):
    source: str
    task_set: str
    gpt4_rated_goal: dict[str, float]
    gpt4_minus_human_goal_gap: dict[str, float]
    human_rated_goal: dict[str, float]
    note: str = ""


class AllGoalBlock(_Strict):
    source: str
    task_set: str
    goal: dict[str, float]


class DimensionsBlock(_Strict):
    source: str
    dimensions: dict[str, tuple[int, int]]
    overall: str


class SotopiaPiReference(_Strict):
    about: str
    hard_goal_vs_gpt35_partner: HardGoalBlock
    sotopia_all_vs_gpt35_partner: AllGoalBlock
    training_recipe: dict[str, Any]
    sotopia_eval_dimensions: DimensionsBlock


def load_reference(path: Path | None = None) -> SotopiaPiReference:
    """The SOTOPIA-pi reference figures; checks that its dimension ranges are the ones we score with."""
    path = path or shared_data_dir() / SOTOPIA_PI_REFERENCE
    if not path.is_file():
        raise DataError(f"reference figures not found at {path}; they ship in ../shared/data/reference/ "
                        "(optional: the study runs without them, the figures then show no published values)")
    try:
        ref = SotopiaPiReference.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as e:
        where = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:5])
        raise DataError(f"{path}: not a valid reference file ({where})") from e
    ranges = {k: tuple(v) for k, v in ref.sotopia_eval_dimensions.dimensions.items()}
    if ranges != DIMENSION_RANGES:
        raise DataError(f"{path}: sotopia_eval_dimensions.dimensions {ranges} differ from the ranges the "
                        f"judge uses {DIMENSION_RANGES}")
    return ref


def reference_goal_gap(ref: SotopiaPiReference) -> pd.DataFrame:
    """The paper's hard-set goal figure as a table: model, role, judge (GPT-4) goal, human goal, gap."""
    block = ref.hard_goal_vs_gpt35_partner
    rows = [{"model": m, "role": PAPER_MODELS.get(m, m), "judge_goal": g,
             "human_goal": block.human_rated_goal.get(m, float("nan")),
             "gap": block.gpt4_minus_human_goal_gap.get(m, float("nan")),
             "source": "published (SOTOPIA-pi paper)"} for m, g in block.gpt4_rated_goal.items()]
    return pd.DataFrame(rows)


def _leaderboard_row(raw: dict[str, Any], where: str) -> list[dict[str, Any]]:
    if "model_name" not in raw:
        raise DataError(f"{where}: no 'model_name' key")
    rows, seen = [], set()
    for key, value in raw.items():
        if key == "model_name":
            continue
        m = _COLUMN.match(key)
        if not m or m["abbr"] not in _ABBREVIATIONS:
            raise DataError(f"{where}: unknown column {key!r}; expected one of {sorted(_ABBREVIATIONS)} "
                            "with its range, e.g. 'GOAL [0, 10]'")
        dim = _ABBREVIATIONS[m["abbr"]]
        if (int(m["lo"]), int(m["hi"])) != DIMENSION_RANGES[dim]:
            raise DataError(f"{where}: column {key!r} has a range other than {list(DIMENSION_RANGES[dim])}")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise DataError(f"{where}: column {key!r} is not a number ({value!r})")
        seen.add(dim)
        rows.append({"model": raw["model_name"], "dimension": dim, "score": float(value)})
    if seen != set(DIMENSION_RANGES):
        raise DataError(f"{where}: missing dimensions {sorted(set(DIMENSION_RANGES) - seen)}")
    return rows


def load_leaderboard(path: Path | None = None) -> pd.DataFrame:
    """SOTOPIA's published scores against a GPT-3.5 partner: tidy model, dimension, score, source.
    Without a path the checksum-verified copy in `data/` is used (fetched on first use)."""
    path = path or verified_path(LEADERBOARD)
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {lineno}: not JSON ({e.msg})") from e
        if not isinstance(raw, dict):
            raise DataError(f"{path}, line {lineno}: expected a JSON object")
        rows.extend(_leaderboard_row(raw, f"{path}, line {lineno}"))
    if not rows:
        raise DataError(f"{path}: no leaderboard rows")
    return pd.DataFrame(rows).assign(source="published (SOTOPIA leaderboard)")
