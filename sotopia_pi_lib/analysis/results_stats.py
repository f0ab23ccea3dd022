"""The reported statistics, computed from the tidy tables of `results` (no file access here).

Units: one evaluated agent in one episode. When a judge rated an episode several times the unit's
score is the mean over its samples, so n counts episodes, never ratings. Means of scores carry a
percentile-bootstrap 95% interval (`stats.mean_ci`); proportions (MMLU accuracy, compliance rate) a
Wilson score interval, which stays honest at 0% or 100% on small n and costs nothing at MMLU's 14k
questions (a bootstrap there needs 10,000 x 14,042 resamples).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from scipy import stats as sps

from ..errors import DataError
from .load import METRICS, MODEL_ORDER
from .stats import grouped_mean_ci, mean_ci, paired_compare

STAT_COLUMNS = ["metric", "mean", "ci_low", "ci_high", "n"]
PROPORTION_CI = "Wilson score interval (scipy.stats.binomtest(...).proportion_ci, method='wilson')"
ITEM = ["combo_id", "position"]
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
        if base not in set(part["model"]):
            continue
        per_item = part.groupby(["model", *ITEM])[list(metrics)].mean()
        b = per_item.loc[base]
        present = set(part["model"])
        for model in [m for m in models if m in present and m != base] + sorted(present - {base, *models}):
            a = per_item.loc[model]
            common = a.index.intersection(b.index)
            unpaired = len(a.index.union(b.index)) - len(common)
            for metric in metrics:
                if len(common) == 0:
                    continue
                c = paired_compare(a.loc[common, metric], b.loc[common, metric], model_a=model, model_b=base)
                rows.append(
                    {
                        "task_set": task_set,
                        "metric": metric,
                        **c.model_dump(
                            include={
                                "model_a",
                                "model_b",
                                "mean_a",
                                "mean_b",
                                "diff",
                                "ci_low",
                                "ci_high",
                                "p_value",
                                "n",
                            }
                        ),
                        "n_unpaired": unpaired,
                    }
                )
    cols = [
        "task_set",
        "metric",
        "model_a",
        "model_b",
        "mean_a",
        "mean_b",
        "diff",
        "ci_low",
        "ci_high",
        "p_value",
        "n",
        "n_unpaired",
    ]
    return pd.DataFrame(rows, columns=cols)


def proportion(successes: int, n: int) -> tuple[float, float, float]:
    """Rate with its Wilson 95% interval; NaNs for n == 0."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    ci = sps.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return successes / n, float(ci.low), float(ci.high)


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
        rows.append(
            {
                "model": model,
                "metric": "compliance",
                "mean": rate,
                "ci_low": low,
                "ci_high": high,
                "n": len(judged),
                "n_unjudged": len(flags) - len(judged),
            }
        )
    return pd.concat([out, pd.DataFrame(rows)], ignore_index=True) if rows else out


def mmlu_stats(mmlu: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per model and category, plus category "all": accuracy, ci_low, ci_high (Wilson), n,
    unanswered (no letter in the reply; scored wrong)."""
    cols = ["model", "category", "accuracy", "ci_low", "ci_high", "n", "unanswered"]
    if mmlu.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for model, part in mmlu.groupby("model", sort=True):
        groups = [*part.groupby("category", sort=True), ("all", part)]
        for category, g in groups:
            acc, low, high = proportion(int(g["correct"].sum()), len(g))
            rows.append(
                {
                    "model": model,
                    "category": category,
                    "accuracy": acc,
                    "ci_low": low,
                    "ci_high": high,
                    "n": len(g),
                    "unanswered": int(g["predicted"].isna().sum()),
                }
            )
    return pd.DataFrame(rows, columns=cols)


def training_stats(training: pd.DataFrame) -> pd.DataFrame:
    """Goal of the collected training data per source and round, all units and the kept ones."""
    cols = ["source", "round", "subset", *STAT_COLUMNS]
    rows = []
    for (source, round_), part in training.groupby(["source", "round"], sort=True):
        subsets = [("all", part)]
        if part["kept"].notna().all():
            subsets.append(("kept", part[part["kept"].astype(bool)]))
        for subset, s in subsets:
            if s.empty:
                continue
            m = mean_ci(s["goal"], what=f"goal of {source} round {round_} ({subset})")
            rows.append(
                {
                    "source": source,
                    "round": round_,
                    "subset": subset,
                    "metric": "goal",
                    "mean": m.mean,
                    "ci_low": m.ci_low,
                    "ci_high": m.ci_high,
                    "n": m.n,
                }
            )
    return pd.DataFrame(rows, columns=cols)
