"""Scores per model: goal and overall on SOTOPIA (all) and SOTOPIA-hard, and the seven SOTOPIA-EVAL
dimensions; bars with 95% CIs on each score's full range, published values as hollow diamonds, a
model without episodes as a labelled gap."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
from matplotlib.figure import Figure

from ..load import METRICS, MODEL_ORDER
from ..stats import CI_METHOD
from .style import (
    TASK_SET_LABELS,
    bar_panel,
    caption,
    figure_legend,
    figure_title,
    new_figure,
    published_handle,
    range_label,
    styled,
)

MAIN_TASK_SETS = ("sotopia_all", "sotopia_hard")
Gaps = Callable[[str, str], str]


def _published(
    published: pd.DataFrame | None, task_set: str, metric: str
) -> tuple[dict[str, float], set[str]]:
    if published is None or published.empty:
        return {}, set()
    part = published[(published["task_set"] == task_set) & (published["metric"] == metric)]
    return dict(zip(part["model"], part["value"], strict=True)), set(part["label"])


def _gaps(gap_reason: Gaps | None, models: Sequence[str], task_set: str) -> dict[str, str]:
    return {m: gap_reason(m, task_set) for m in models} if gap_reason else {}


def _legend(fig, labels: set[str]) -> None:
    if labels:
        figure_legend(fig, [published_handle(lbl) for lbl in sorted(labels)])


@styled
def goal_overall_figure(
    stats: pd.DataFrame,
    *,
    models: Sequence[str] = MODEL_ORDER,
    published: pd.DataFrame | None = None,
    gap_reason: Gaps | None = None,
    judge: str | None = None,
    notes: Sequence[str] = (),
) -> Figure:
    """Goal and overall per model on SOTOPIA (all) and SOTOPIA-hard: bars with 95% CIs on the full
    score range, n under each bar, published values as hollow diamonds. `stats` is score_stats'
    table (model, task_set, metric, mean, ci_low, ci_high, n)."""
    models = list(models)
    labels: set[str] = set()
    fig = new_figure(10, 6.6)
    axes = fig.subplots(2, 2, sharey="row")
    for col, task_set in enumerate(MAIN_TASK_SETS):
        for row, metric in enumerate(("goal", "overall")):
            ax = axes[row][col]
            part = stats[(stats["task_set"] == task_set) & (stats["metric"] == metric)]
            values, lbls = _published(published, task_set, metric)
            labels |= lbls
            bar_panel(
                ax, part, models, metric, gaps=_gaps(gap_reason, models, task_set), published=values
            )
            ax.set_title(f"{TASK_SET_LABELS[task_set]}: {metric}", loc="left")
            if col == 0:
                ax.set_ylabel(f"{range_label(metric)} (points)")
    _legend(fig, labels)
    figure_title(fig, "Goal and overall score per model", judge)
    caption(
        fig,
        [
            f"Bars: mean over evaluated agents (one per episode), error bars: 95% CI, {CI_METHOD}; "
            "n = episodes. Axes span each score's full range; overall = mean of the seven dimensions.",
            *notes,
        ],
    )
    return fig


def _n_text(stats: pd.DataFrame, models: Sequence[str]) -> str:
    n = stats[stats["metric"] == "goal"].set_index("model")["n"]
    counts = {m: int(n[m]) for m in models if m in n.index}
    if not counts:
        return "no episodes"
    if len(set(counts.values())) == 1:
        return f"n = {next(iter(counts.values()))} per model"
    return "n: " + ", ".join(f"{m} {c}" for m, c in counts.items())


@styled
def dimensions_figure(
    stats: pd.DataFrame,
    *,
    models: Sequence[str] = MODEL_ORDER,
    task_sets: Sequence[str] = MAIN_TASK_SETS,
    published: pd.DataFrame | None = None,
    gap_reason: Gaps | None = None,
    judge: str | None = None,
    notes: Sequence[str] = (),
) -> Figure:
    """The seven SOTOPIA-EVAL dimensions and overall per model: one row per task set, one small panel per
    dimension, each on its own score range."""
    models = list(models)
    metrics = list(METRICS)
    labels: set[str] = set()
    fig = new_figure(2.0 * len(metrics), 2.9 * len(task_sets) + 0.6)
    axes = fig.subplots(len(task_sets), len(metrics), squeeze=False)
    for r, task_set in enumerate(task_sets):
        for c, metric in enumerate(metrics):
            ax = axes[r][c]
            part = stats[(stats["task_set"] == task_set) & (stats["metric"] == metric)]
            values, lbls = _published(published, task_set, metric)
            labels |= lbls
            bar_panel(ax, part, models, metric, gaps=_gaps(gap_reason, models, task_set), published=values,
                      show_n=False, value_labels=False)
            ax.tick_params(axis="x", labelrotation=90)
            ax.set_title(range_label(metric) if r == 0 else "", fontsize=8)
            if c == 0:
                n_part = stats[stats["task_set"] == task_set]
                ax.set_ylabel(f"{TASK_SET_LABELS[task_set]}\n({_n_text(n_part, models)})", fontsize=8)
    _legend(fig, labels)
    figure_title(fig, "The seven SOTOPIA-EVAL dimensions and overall, per model", judge)
    caption(
        fig,
        [
            f"Mean with 95% CI ({CI_METHOD}); each panel spans its dimension's score range "
            "(secret and social rules run from -10 to 0: 0 is best).",
            *notes,
        ],
    )
    return fig
