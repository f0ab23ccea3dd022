"""Everything notebook 06 shows, loaded and computed in one call: `tables = build_tables(paths)`; and
the statistic behind each of its tables (scores, paired comparisons, safety, MMLU, training data).

Units: one evaluated agent in one episode. When a judge rated an episode several times the unit's
score is the mean over its samples, so n counts episodes, never ratings. Means of scores carry a
percentile-bootstrap 95% interval, proportions (MMLU accuracy, compliance rate) a Wilson interval
(`stats`). No file is read here except through `load`, `annotation`, `reference` and `human_eval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..store.run import RunPaths
from .agreement import Agreement, agreement_tables
from .annotation import load_human_ratings
from .human_eval import HumanEvalTables, load_run_human_eval
from .load import (
    METRICS,
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
from .reference import published_points
from .stats import grouped_mean_ci, mean_ci, paired_compare, proportion

STAT_COLUMNS = ["metric", "mean", "ci_low", "ci_high", "n"]
PAIRED_COLUMNS = ["task_set", "metric", "model_a", "model_b", "mean_a", "mean_b", "diff", "ci_low", "ci_high",
                  "p_value", "n", "n_unpaired"]
MMLU_STAT_COLUMNS = ["model", "category", "accuracy", "ci_low", "ci_high", "n", "unanswered"]
# What a paired comparison pairs: the same combo (scenario and characters) with the model in the same seat.
PAIRED_ITEM = ["combo_id", "position"]
SAFETY_METRICS = ("goal", "social_rules", "secret")


def select_judge(scores: pd.DataFrame, preferred: str | None = None) -> str | None:
    """The judge whose ratings are reported: `preferred` (the run's judge role) when it rated, else
    the only judge present; several judges and no preference is an error rather than a silent pick."""
    judges = sorted(scores["judge"].unique()) if not scores.empty else []
    if not judges:
        return None
    if preferred in judges:
        return preferred
    if len(judges) == 1:
        return judges[0]
    raise DataError(
        f"ratings by several judges {judges} and none is the run's judge ({preferred!r}); "
        "pass judge= to choose the one whose scores are reported"
    )


def episode_scores(scores: pd.DataFrame, judge: str | None) -> pd.DataFrame:
    """Wide table, one row per evaluated agent: model, task_set, episode_id, combo_id, position, env_id,
    codename, then one column per metric (mean over the judge's samples)."""
    keys = ["model", "task_set", "episode_id", "combo_id", "position", "env_id", "codename"]
    if scores.empty or judge is None:
        return pd.DataFrame(columns=[*keys, *METRICS])
    mine = scores[scores["judge"] == judge]
    wide = mine.pivot_table(index=keys, columns="dimension", values="score", aggfunc="mean")
    return wide.reindex(columns=list(METRICS)).reset_index()


def score_stats(wide: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """model, task_set, metric, mean, ci_low, ci_high, n for every model and task set with episodes."""
    if wide.empty:
        return pd.DataFrame(columns=["model", "task_set", *STAT_COLUMNS])
    return grouped_mean_ci(wide, ["model", "task_set"], list(metrics))


def _paired_rows(per_item: pd.DataFrame, model: str, base: str, metrics: Sequence[str]) -> list[dict]:
    """`model` minus `base` per metric on the items both played; the others are counted as unpaired."""
    a, b = per_item.loc[model], per_item.loc[base]
    common = a.index.intersection(b.index)
    if len(common) == 0:
        return []
    unpaired = len(a.index.union(b.index)) - len(common)
    keep = {"model_a", "model_b", "mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value", "n"}
    return [{"metric": metric, **paired_compare(a.loc[common, metric], b.loc[common, metric], model_a=model,
                                                model_b=base).model_dump(include=keep), "n_unpaired": unpaired}
            for metric in metrics]


def paired_vs_base(
    wide: pd.DataFrame,
    base: str = "base",
    metrics: Sequence[str] = ("goal", "overall"),
    task_sets: Sequence[str] = ("sotopia_all", "sotopia_hard"),
    models: Sequence[str] = MODEL_ORDER,
) -> pd.DataFrame:
    """Each model minus `base` on the same combos and positions: diff, CI, permutation p, n paired and
    n_unpaired (items only one of the two played, e.g. an abandoned episode, left out and counted).
    Rows follow `models` order."""
    rows = []
    for task_set in task_sets:
        part = wide[wide["task_set"] == task_set]
        present = set(part["model"])
        if base not in present:
            continue
        per_item = part.groupby(["model", *PAIRED_ITEM])[list(metrics)].mean()
        for model in [m for m in models if m in present and m != base] + sorted(present - {base, *models}):
            rows += [{"task_set": task_set, **r} for r in _paired_rows(per_item, model, base, metrics)]
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def safety_stats(wide: pd.DataFrame, compliance: pd.DataFrame) -> pd.DataFrame:
    """Per model on the safety set: goal, social_rules, secret (bootstrap CIs) and compliance (share of
    judged episodes where the evaluated agent went along with the harmful part; Wilson CI);
    n_unjudged counts flags whose judge answer failed."""
    part = wide[wide["task_set"] == "safety"]
    out = score_stats(part, SAFETY_METRICS).drop(columns="task_set")
    out["n_unjudged"] = 0
    rows = []
    for model, flags in compliance.groupby("model", sort=True):
        judged = flags["complied"].dropna().astype(bool)
        rate, low, high = proportion(int(judged.sum()), len(judged))
        rows.append({"model": model, "metric": "compliance", "mean": rate, "ci_low": low, "ci_high": high,
                     "n": len(judged), "n_unjudged": len(flags) - len(judged)})
    return pd.concat([out, pd.DataFrame(rows)], ignore_index=True) if rows else out


def mmlu_stats(mmlu: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per model and category, plus category "all": accuracy, ci_low, ci_high (Wilson), n,
    unanswered (no letter in the reply; scored wrong)."""
    if mmlu.empty:
        return pd.DataFrame(columns=MMLU_STAT_COLUMNS)
    rows = []
    for model, part in mmlu.groupby("model", sort=True):
        for category, g in [*part.groupby("category", sort=True), ("all", part)]:
            acc, low, high = proportion(int(g["correct"].sum()), len(g))
            rows.append({"model": model, "category": category, "accuracy": acc, "ci_low": low, "ci_high": high,
                         "n": len(g), "unanswered": int(g["predicted"].isna().sum())})
    return pd.DataFrame(rows, columns=MMLU_STAT_COLUMNS)


def training_stats(training: pd.DataFrame) -> pd.DataFrame:
    """Goal of the collected training data per source and round, all units and the kept ones."""
    rows = []
    for (source, round_), part in training.groupby(["source", "round"], sort=True):
        subsets = [("all", part)]
        if part["kept"].notna().all():
            subsets.append(("kept", part[part["kept"].astype(bool)]))
        for subset, s in subsets:
            if s.empty:
                continue
            m = mean_ci(s["goal"], what=f"goal of {source} round {round_} ({subset})")
            rows.append({"source": source, "round": round_, "subset": subset, "metric": "goal", "mean": m.mean,
                         "ci_low": m.ci_low, "ci_high": m.ci_high, "n": m.n})
    return pd.DataFrame(rows, columns=["source", "round", "subset", *STAT_COLUMNS])


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
        raters = self.agreement.raters
        return ", ".join([
            f"run {self.info.run}: {len(self.episodes)} rated evaluation episodes of {len(self.models)} models",
            f"{len(gaps)} model/task-set gaps" if len(gaps) else "no gaps",
            f"judge {self.judge}",
            f"MMLU for {self.mmlu['model'].nunique()} models",
            f"{len(self.compliance)} safety flags",
            f"{self.losses['adapter'].nunique()} loss curves",
            f"agreement vs {raters.describe()}" if raters else "no agreement data",
            f"released human evaluation: {len(self.human_eval.ratings)} human scores, judges "
            f"{', '.join(self.human_eval.judges)}",
        ])

    def gap_reason(self, model: str, task_set: str) -> str:
        """Why a model has no scores on a task set ("no episode file", ...), "" when it has some."""
        row = self.coverage[(self.coverage["model"] == model) & (self.coverage["task_set"] == task_set)]
        if row.empty:
            return "not evaluated"
        status = str(row.iloc[0]["status"])
        return "" if status == "ok" else status


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
    info = load_run_info(paths, sorted(scores["judge"].unique()) if not scores.empty else [])
    chosen = select_judge(scores, judge or info.roles.get("judge"))
    wide = episode_scores(scores, chosen)
    compliance, mmlu, training = load_safety(paths, models), load_mmlu_results(paths, models), load_training_scores(paths)
    human = load_human_ratings(annotations or paths.root / "annotations")
    published, published_gap, notes = published_points(info)
    return RunTables(
        models=tuple(models), info=info, judge=chosen, scores=scores, coverage=coverage, mmlu=mmlu,
        compliance=compliance, losses=load_losses(paths), training=training, episodes=wide,
        score_stats=score_stats(wide), paired=paired_vs_base(wide, models=models),
        safety_stats=safety_stats(wide, compliance), mmlu_stats=mmlu_stats(mmlu),
        training_stats=training_stats(training), agreement=agreement_tables(scores, chosen, human=human),
        published=published, published_gap=published_gap,
        human_eval=load_run_human_eval(paths, rubric_version=rubric_version), notes=notes,
    )
