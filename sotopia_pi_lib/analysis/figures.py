"""The study's figures, drawn from tidy tables only (no model, no run folder access).

Every function takes the tables it draws and an output folder, writes `<name>.png` (150 dpi) and
`<name>.pdf`, and returns their paths. A model or table without data is drawn as a labelled gap;
published numbers are hollow diamonds with their source in the legend. `draw_all(tables, out_dir)`
draws every figure of a `RunTables` (see `tables.build_tables`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib
import pandas as pd

from .figures_agreement import plot_agreement, plot_goal_gap
from .figures_extra import plot_losses, plot_mmlu, plot_safety, plot_training_scores
from .figures_human_eval import draw_human_eval
from .figures_style import (
    RC,
    TASK_SET_LABELS,
    bar_panel,
    caption,
    figure_legend,
    new_figure,
    published_handle,
    range_label,
    save,
)
from .load import METRICS, MODEL_ORDER
from .stats import CI_METHOD
from .tables import RunTables

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


def plot_goal_overall(
    stats: pd.DataFrame,
    out_dir: Path,
    *,
    models: Sequence[str] = MODEL_ORDER,
    published: pd.DataFrame | None = None,
    gap_reason: Gaps | None = None,
    judge: str | None = None,
    notes: Sequence[str] = (),
) -> list[Path]:
    """Goal and overall per model on SOTOPIA (all) and SOTOPIA-hard: bars with 95% CIs on the full
    score range, n under each bar, published values as hollow diamonds. `stats` is score_stats'
    table (model, task_set, metric, mean, ci_low, ci_high, n)."""
    models = list(models)
    labels: set[str] = set()
    with matplotlib.rc_context(RC):
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
        fig.suptitle(
            "Goal and overall score per model" + (f" (judge: {judge})" if judge else ""),
            fontweight="bold",
            x=0.01,
            ha="left",
        )
        caption(
            fig,
            [
                f"Bars: mean over evaluated agents (one per episode), error bars: 95% CI, {CI_METHOD}; "
                "n = episodes. Axes span each score's full range; overall = mean of the seven dimensions.",
                *notes,
            ],
        )
        return save(fig, out_dir, "goal_overall")


def _n_text(stats: pd.DataFrame, models: Sequence[str]) -> str:
    n = stats[stats["metric"] == "goal"].set_index("model")["n"]
    counts = {m: int(n[m]) for m in models if m in n.index}
    if not counts:
        return "no episodes"
    if len(set(counts.values())) == 1:
        return f"n = {next(iter(counts.values()))} per model"
    return "n: " + ", ".join(f"{m} {c}" for m, c in counts.items())


def plot_dimensions(
    stats: pd.DataFrame,
    out_dir: Path,
    *,
    models: Sequence[str] = MODEL_ORDER,
    task_sets: Sequence[str] = MAIN_TASK_SETS,
    published: pd.DataFrame | None = None,
    gap_reason: Gaps | None = None,
    judge: str | None = None,
    notes: Sequence[str] = (),
) -> list[Path]:
    """The seven SOTOPIA-EVAL dimensions and overall per model: one row per task set, one small panel per
    dimension, each on its own score range."""
    models = list(models)
    metrics = list(METRICS)
    labels: set[str] = set()
    with matplotlib.rc_context(RC):
        fig = new_figure(2.0 * len(metrics), 2.9 * len(task_sets) + 0.6)
        axes = fig.subplots(len(task_sets), len(metrics), squeeze=False)
        for r, task_set in enumerate(task_sets):
            for c, metric in enumerate(metrics):
                ax = axes[r][c]
                part = stats[(stats["task_set"] == task_set) & (stats["metric"] == metric)]
                values, lbls = _published(published, task_set, metric)
                labels |= lbls
                bar_panel(
                    ax,
                    part,
                    models,
                    metric,
                    gaps=_gaps(gap_reason, models, task_set),
                    published=values,
                    show_n=False,
                    value_labels=False,
                )
                ax.tick_params(axis="x", labelrotation=90)
                ax.set_title(range_label(metric) if r == 0 else "", fontsize=8)
                if c == 0:
                    n_part = stats[stats["task_set"] == task_set]
                    ax.set_ylabel(f"{TASK_SET_LABELS[task_set]}\n({_n_text(n_part, models)})", fontsize=8)
        _legend(fig, labels)
        fig.suptitle(
            "The seven SOTOPIA-EVAL dimensions and overall, per model"
            + (f" (judge: {judge})" if judge else ""),
            fontweight="bold",
            x=0.01,
            ha="left",
        )
        caption(
            fig,
            [
                f"Mean with 95% CI ({CI_METHOD}); each panel spans its dimension's score range "
                "(secret and social rules run from -10 to 0: 0 is best).",
                *notes,
            ],
        )
        return save(fig, out_dir, "dimensions")


def _embedded_note(tables: RunTables) -> list[str]:
    roles = tables.info.embedded_roles
    return (
        [
            f"Embedded SmolLM2-135M model in roles {', '.join(roles)}: these scores test the pipeline and "
            "mean nothing about social intelligence."
        ]
        if roles
        else []
    )


def draw_all(tables: RunTables, out_dir: Path) -> Mapping[str, list[Path]]:
    """Every figure of the study from a RunTables; returns name -> [png, pdf]."""
    notes = _embedded_note(tables)
    # tables.notes say which published values are drawn and why: only for figures that draw them
    common = {"models": tables.models, "judge": tables.judge, "notes": notes + tables.notes}
    return {
        "goal_overall": plot_goal_overall(
            tables.score_stats, out_dir, published=tables.published, gap_reason=tables.gap_reason, **common
        ),
        "dimensions": plot_dimensions(
            tables.score_stats, out_dir, published=tables.published, gap_reason=tables.gap_reason, **common
        ),
        "safety": plot_safety(
            tables.safety_stats,
            out_dir,
            models=tables.models,
            gap_reason=tables.gap_reason,
            judge=tables.judge,
            notes=notes,
        ),
        "mmlu": plot_mmlu(
            tables.mmlu_stats, out_dir, models=tables.models, method=_mmlu_method(tables.mmlu), notes=notes
        ),
        "agreement": plot_agreement(tables.agreement, out_dir, notes=notes),
        "goal_gap": plot_goal_gap(
            tables.agreement,
            out_dir,
            published_gap=tables.published_gap,
            models=tables.models,
            notes=notes + tables.notes,
        ),
        "training_loss": plot_losses(tables.losses, out_dir, notes=notes),
        "training_scores": plot_training_scores(tables.training, out_dir, notes=notes),
        **draw_human_eval(tables.human_eval, out_dir),
    }


def _mmlu_method(mmlu: pd.DataFrame) -> str:
    if mmlu.empty:
        return ""
    parts = [
        f"{m}: {meth}, k={k}"
        for m, (meth, k) in mmlu.groupby("model")[["method", "k_shot"]].first().iterrows()
    ]
    uniq = mmlu[["method", "k_shot"]].drop_duplicates()
    if len(uniq) == 1:
        meth, k = uniq.iloc[0]
        return f"{k}-shot, " + (
            "log-prob of the answer letters" if meth == "logprobs" else "constrained one-letter answer"
        )
    return "; ".join(parts)
