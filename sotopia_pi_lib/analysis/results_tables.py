"""Everything notebook 06 shows, loaded and computed in one call: `tables = build_tables(paths)`.

The published numbers drawn beside ours are chosen here, in one place, by one rule: a published
value is shown only for the model of this study that plays the same part as in the publication. The
base, SR, BC and BC+SR policies are always the SOTOPIA-pi recipe's models (the paper's came from
Mistral-7B; the label says so); the expert is compared with GPT-4's published scores only when the
expert IS GPT-4. Every published point carries a label naming its source and judge.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..store.run import RunPaths
from .human_eval import HumanEvalTables, load_run_human_eval
from .load import (
    MODEL_ORDER,
    MissingRatings,
    RunInfo,
    load_eval_with_coverage,
    load_losses,
    load_mmlu_results,
    load_run_info,
    load_safety,
    load_training_scores,
)
from .reference import load_leaderboard, load_reference
from .results_agreement import Agreement, agreement_tables, load_human_ratings
from .results_stats import (
    episode_scores,
    mmlu_stats,
    paired_vs_base,
    safety_stats,
    score_stats,
    select_judge,
    training_stats,
)

PAPER_LABEL = "published: SOTOPIA-pi paper (Mistral-7B-based models, GPT-4 judge, GPT-3.5 partner)"
LEADERBOARD_LABEL = "published: SOTOPIA leaderboard (GPT-4 vs GPT-3.5 partner, GPT-4 judge)"
GAP_LABEL = "published: GPT-4 judge − human (SOTOPIA-pi paper, SOTOPIA-hard)"
PUBLISHED_COLUMNS = ["model", "task_set", "metric", "value", "label"]
_GPT4 = re.compile(r"openai:gpt-4(-0314|-0613)?")
# The paper's model keys (reference.PAPER_MODELS) -> this study's model names.
PAPER_TO_STUDY = {"mistral-7b": "base", "sr": "sr", "bc": "bc", "bc+sr": "bc_sr", "gpt-4": "expert"}


@dataclass
class RunTables:
    """Raw tidy tables (scores, coverage, mmlu, compliance, losses, training) and the statistics."""

    models: tuple[str, ...]
    info: RunInfo
    judge: str | None
    scores: pd.DataFrame
    coverage: pd.DataFrame
    mmlu: pd.DataFrame
    compliance: pd.DataFrame
    losses: pd.DataFrame
    training: pd.DataFrame
    episodes: pd.DataFrame  # one row per evaluated agent, one column per metric
    score_stats: pd.DataFrame
    paired: pd.DataFrame
    safety_stats: pd.DataFrame
    mmlu_stats: pd.DataFrame
    training_stats: pd.DataFrame
    agreement: Agreement
    published: pd.DataFrame
    published_gap: pd.DataFrame
    human_eval: HumanEvalTables  # SOTOPIA-pi's released human evaluation, and the run's judge against it
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line on what was found, for the end of notebook 06's loading cell."""
        gaps = self.coverage[self.coverage["status"] != "ok"]
        parts = [
            f"run {self.info.run}: {len(self.episodes)} rated evaluation episodes of {len(self.models)} models",
            f"{len(gaps)} model/task-set gaps" if len(gaps) else "no gaps",
            f"judge {self.judge}",
            f"MMLU for {self.mmlu['model'].nunique()} models",
            f"{len(self.compliance)} safety flags",
            f"{self.losses['adapter'].nunique()} loss curves",
            f"agreement vs {self.agreement.raters.describe()}"
            if self.agreement.raters
            else "no agreement data",
            f"released human evaluation: {len(self.human_eval.ratings)} human scores, judges "
            f"{', '.join(self.human_eval.judges)}",
        ]
        return ", ".join(parts)

    def gap_reason(self, model: str, task_set: str) -> str:
        """Why a model has no scores on a task set ("no episode file", ...), "" when it has some."""
        row = self.coverage[(self.coverage["model"] == model) & (self.coverage["task_set"] == task_set)]
        if row.empty:
            return "not evaluated"
        status = str(row.iloc[0]["status"])
        return "" if status == "ok" else status


def expert_is_gpt4(info: RunInfo) -> bool:
    return bool(_GPT4.fullmatch(info.roles.get("expert", "")))


def published_points(info: RunInfo) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(points, gap, notes): published goal/overall/dimension values per study model and task set,
    the paper's judge-minus-human goal gap per study model, and notes on what was left out and why."""
    notes, points, gap = [], [], []
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
    wanted = {m for m in PAPER_TO_STUDY.values() if m != "expert" or gpt4}
    try:
        hard = load_reference().hard_goal_vs_gpt35_partner
        for paper_model, value in hard.gpt4_rated_goal.items():
            model = PAPER_TO_STUDY.get(paper_model)
            if model in wanted:
                points.append((model, "sotopia_hard", "goal", value, PAPER_LABEL))
                gap.append((model, hard.gpt4_minus_human_goal_gap[paper_model], GAP_LABEL))
    except DataError as e:
        notes.append(f"published SOTOPIA-pi figures unavailable: {e}")
    if gpt4:
        try:
            board = load_leaderboard()
            row = board[board["model"] == "GPT-4"]
            points += [
                ("expert", "sotopia_all", d, s, LEADERBOARD_LABEL)
                for d, s in zip(row["dimension"], row["score"], strict=True)
            ]
            points.append(("expert", "sotopia_all", "overall", float(row["score"].mean()), LEADERBOARD_LABEL))
        except DataError as e:
            notes.append(f"published SOTOPIA leaderboard unavailable: {e}")
    return (
        pd.DataFrame(points, columns=PUBLISHED_COLUMNS),
        pd.DataFrame(gap, columns=["model", "gap", "label"]),
        notes,
    )


def _run_judge(info: RunInfo) -> str | None:
    return info.roles.get("judge")


def build_tables(
    paths: RunPaths,
    models: Sequence[str] = MODEL_ORDER,
    *,
    missing_ratings: MissingRatings = "error",
    judge: str | None = None,
    rubric_version: str | None = None,
    annotations: Path | None = None,
    progress: bool = False,
) -> RunTables:
    """Load `results/<run>/` and compute every reported statistic (no model is loaded).

    `judge` picks the reported judge when several rated (default: the run's judge role); human ratings
    are read from `annotations` (default `results/<run>/annotations/`) when any were returned."""
    scores, coverage = load_eval_with_coverage(
        paths, models, missing_ratings=missing_ratings, rubric_version=rubric_version, progress=progress
    )
    judges = sorted(scores["judge"].unique()) if not scores.empty else []
    info = load_run_info(paths, judges)
    chosen = select_judge(scores, judge or _run_judge(info))
    wide = episode_scores(scores, chosen)
    compliance = load_safety(paths, models)
    mmlu = load_mmlu_results(paths, models)
    training = load_training_scores(paths)
    human = load_human_ratings(annotations or paths.root / "annotations")
    published, published_gap, notes = published_points(info)
    return RunTables(
        models=tuple(models),
        info=info,
        judge=chosen,
        scores=scores,
        coverage=coverage,
        mmlu=mmlu,
        compliance=compliance,
        losses=load_losses(paths),
        training=training,
        episodes=wide,
        score_stats=score_stats(wide),
        paired=paired_vs_base(wide, models=models),
        safety_stats=safety_stats(wide, compliance),
        mmlu_stats=mmlu_stats(mmlu),
        training_stats=training_stats(training),
        agreement=agreement_tables(scores, chosen, human=human),
        published=published,
        published_gap=published_gap,
        human_eval=load_run_human_eval(paths, rubric_version=rubric_version),
        notes=notes,
    )
