"""The paper's published numbers, typed, and which of them are drawn beside ours (always marked as
published).

Two files from `../shared/data/reference/`: SOTOPIA's leaderboard against a GPT-3.5 partner (pinned
by checksum, copied into `data/` by the data fetcher) and the SOTOPIA-pi figures written for this
project from the paper's figure sources (no pinned checksum: read in place, validated by its schema).

The published numbers drawn beside ours are chosen here, in one place, by one rule
(`published_points`): a published value is shown only for the model of this study that plays the same
part as in the publication. The base, SR, BC and BC+SR policies are always the SOTOPIA-pi recipe's
models (the paper's came from Mistral-7B; the label says so); the expert is compared with GPT-4's
published scores only when the expert IS GPT-4. Every published point carries a label naming its
source and judge.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import ValidationError

from ..data.fetch import verified_path
from ..errors import DataError
from ..paths import shared_data_dir
from ..strict import StrictModel
from .agreement import DIMENSION_RANGES

if TYPE_CHECKING:  # only a type here; importing load would pull in the run readers
    from .load import RunInfo

LEADERBOARD = "reference/sotopia_leaderboard_vs_gpt35.jsonl"
SOTOPIA_PI_REFERENCE = "reference/sotopia_pi_reference.json"

# The leaderboard's column abbreviations, as SOTOPIA's figures write them.
_ABBREVIATIONS = {
    "BEL": "believability", "REL": "relationship", "KNO": "knowledge", "SEC": "secret",
    "SOC": "social_rules", "FIN": "financial_and_material_benefits", "GOAL": "goal",
}
_COLUMN = re.compile(r"^(?P<abbr>[A-Z]+) \[(?P<lo>-?\d+), (?P<hi>-?\d+)\]$")

# The paper's model keys -> this study's model names, for placing published values beside ours.
PAPER_TO_STUDY = {"mistral-7b": "base", "sr": "sr", "bc": "bc", "bc+sr": "bc_sr", "gpt-4": "expert"}
PAPER_LABEL = "published: SOTOPIA-pi paper (Mistral-7B-based models, GPT-4 judge, GPT-3.5 partner)"
LEADERBOARD_LABEL = "published: SOTOPIA leaderboard (GPT-4 vs GPT-3.5 partner, GPT-4 judge)"
GAP_LABEL = "published: GPT-4 judge − human (SOTOPIA-pi paper, SOTOPIA-hard)"
PUBLISHED_COLUMNS = ["model", "task_set", "metric", "value", "label"]
_GPT4 = re.compile(r"openai:gpt-4(-0314|-0613)?")


class HardGoalBlock(StrictModel):
    source: str
    task_set: str
    gpt4_rated_goal: dict[str, float]
    gpt4_minus_human_goal_gap: dict[str, float]
    human_rated_goal: dict[str, float]
    note: str = ""


class AllGoalBlock(StrictModel):
    source: str
    task_set: str
    goal: dict[str, float]


class DimensionsBlock(StrictModel):
    source: str
    dimensions: dict[str, tuple[int, int]]
    overall: str


class SotopiaPiReference(StrictModel):
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
    """The paper's hard-set goal figure as a table: model, role (this study's model), judge (GPT-4)
    goal, human goal, gap."""
    block = ref.hard_goal_vs_gpt35_partner
    rows = [{"model": m, "role": PAPER_TO_STUDY.get(m, m), "judge_goal": g,
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


def expert_is_gpt4(info: RunInfo) -> bool:
    return bool(_GPT4.fullmatch(info.roles.get("expert", "")))


def _paper_points(wanted: set[str]) -> tuple[list[tuple], list[tuple], list[str]]:
    """The paper's GPT-4-rated goal on SOTOPIA-hard and its judge-minus-human gap, per study model."""
    try:
        hard = load_reference().hard_goal_vs_gpt35_partner
    except DataError as e:
        return [], [], [f"published SOTOPIA-pi figures unavailable: {e}"]
    points, gap = [], []
    for paper_model, value in hard.gpt4_rated_goal.items():
        model = PAPER_TO_STUDY.get(paper_model)
        if model in wanted:
            points.append((model, "sotopia_hard", "goal", value, PAPER_LABEL))
            gap.append((model, hard.gpt4_minus_human_goal_gap[paper_model], GAP_LABEL))
    return points, gap, []


def _leaderboard_points() -> tuple[list[tuple], list[str]]:
    """GPT-4's leaderboard scores on all of SOTOPIA (seven dimensions and their mean), for the expert."""
    try:
        board = load_leaderboard()
    except DataError as e:
        return [], [f"published SOTOPIA leaderboard unavailable: {e}"]
    row = board[board["model"] == "GPT-4"]
    points = [("expert", "sotopia_all", d, s, LEADERBOARD_LABEL)
              for d, s in zip(row["dimension"], row["score"], strict=True)]
    points.append(("expert", "sotopia_all", "overall", float(row["score"].mean()), LEADERBOARD_LABEL))
    return points, []


def published_points(info: RunInfo) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(points, gap, notes): published goal/overall/dimension values per study model and task set,
    the paper's judge-minus-human goal gap per study model, and notes on what was left out and why."""
    notes = []
    gpt4 = expert_is_gpt4(info)
    if not gpt4:
        notes.append(
            f"expert is {info.roles.get('expert', 'unknown')}, not GPT-4: GPT-4's published "
            "scores are not drawn beside it"
        )
    judge = info.roles.get("judge", "unknown")
    if not _GPT4.fullmatch(judge):
        notes.append(
            f"published values were rated by GPT-4; this run's judge is {judge}, so a difference from them "
            "includes the judge as well as the model"
        )
    points, gap, missing = _paper_points({m for m in PAPER_TO_STUDY.values() if m != "expert" or gpt4})
    if gpt4:
        board, board_missing = _leaderboard_points()
        points, missing = points + board, missing + board_missing
    return (pd.DataFrame(points, columns=PUBLISHED_COLUMNS), pd.DataFrame(gap, columns=["model", "gap", "label"]),
            notes + missing)
