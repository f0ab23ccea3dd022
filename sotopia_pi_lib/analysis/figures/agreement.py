"""Rater agreement and the judge-minus-reference goal gap (the paper's human-evaluation figures).

The reference raters are named by their kind in every title and legend: "human annotators", "a
second judge" or "repeated judging". Ratings that are not human are never labelled human.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..agreement import DIMENSIONS, Agreement
from ..load import MODEL_ORDER
from ..stats import CI_METHOD
from .style import (
    METRIC_LABELS,
    PUBLISHED_MARKER,
    caption,
    ci_errors,
    figure_title,
    model_color,
    model_label,
    new_figure,
    no_data,
    no_data_figure,
    published_handle,
    styled,
)


def _who(agreement: Agreement) -> str:
    r = agreement.raters
    assert r is not None
    return r.describe() + ("" if r.kind == "human" else " — not human ratings")


def _alpha_panel(ax, alpha: pd.DataFrame, among: str) -> None:
    dims = list(reversed(DIMENSIONS))
    table = alpha.set_index("dimension").reindex(dims)
    ys = np.arange(len(dims))
    values = table["alpha"].astype(float)
    ax.barh(ys, values.clip(lower=-1).fillna(0), color="#0173b2", height=0.6)
    for y, (_, row) in zip(ys, table.iterrows(), strict=True):
        if pd.isna(row["alpha"]):
            no_data(ax, f"n/a: {row['note'] or 'no ratings'}", -0.95, y, data=True, ha="left")
        else:
            ax.text(
                max(row["alpha"], 0) + 0.02,
                y,
                f"{row['alpha']:.2f} ({int(row['n_items'])} items)",
                va="center",
                fontsize=7,
            )
    ax.axvline(0, color="#888888", linewidth=0.7)
    ax.set_xlim(-1, 1)
    ax.set_yticks(ys, [METRIC_LABELS[d] for d in dims])
    ax.set_xlabel("Krippendorff's alpha (interval); 1 = perfect agreement, 0 = chance")
    ax.set_title(textwrap.fill(f"Krippendorff's alpha, {among}", 60), loc="left", fontsize=9)
    ax.grid(axis="x", color="#e5e5e5")
    ax.grid(axis="y", visible=False)


def _correlation_panel(ax, corr: pd.DataFrame) -> None:
    dims = list(reversed(DIMENSIONS))
    table = corr.set_index("dimension").reindex(dims)
    ys = np.arange(len(dims))
    for offset, (name, key, color) in zip(
        (0.15, -0.15),
        (("Pearson r", "pearson", "#0173b2"), ("Spearman ρ", "spearman", "#de8f05")),
        strict=True,
    ):
        col = "pearson_r" if key == "pearson" else "spearman_rho"
        v = table[col].astype(float)
        err = np.vstack([(v - table[f"{key}_ci_low"]).fillna(0), (table[f"{key}_ci_high"] - v).fillna(0)])
        ax.errorbar(v, ys + offset, xerr=err, fmt="o", color=color, markersize=4, capsize=2, label=name)
    for y, (_, row) in zip(ys, table.iterrows(), strict=True):
        if pd.isna(row.get("pearson_r")):
            no_data(ax, f"n/a: {row.get('note') or 'no common items'}", -0.95, y, data=True, ha="left")
    ax.axvline(0, color="#888888", linewidth=0.7)
    ax.set_xlim(-1, 1)
    ax.set_yticks(ys, [METRIC_LABELS[d] for d in dims])
    n = int(table["n"].max()) if table["n"].notna().any() else 0
    ax.set_xlabel(f"correlation of judge and reference scores (n = {n} rated agents)")
    ax.set_title("Judge vs reference, per dimension", loc="left", fontsize=9)
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.grid(axis="x", color="#e5e5e5")
    ax.grid(axis="y", visible=False)


@styled
def agreement_figure(agreement: Agreement, *, notes: Sequence[str] = ()) -> Figure:
    """Krippendorff's alpha per dimension and the judge-vs-reference correlations (95% CIs)."""
    title = "Rater agreement"
    if not agreement.available:
        return no_data_figure(title, f"no data: {agreement.note}", 8, 3)
    fig = new_figure(11, 4.4)
    left, right = fig.subplots(1, 2)
    _alpha_panel(left, agreement.alpha, agreement.alpha_among)
    _correlation_panel(right, agreement.correlation)
    figure_title(fig, textwrap.fill(f"{title}: judge {agreement.judge} vs {_who(agreement)}", 100))
    caption(
        fig,
        [
            "Pearson: Fisher-z 95% CI; Spearman: percentile bootstrap over items (2,000 resamples). "
            "The reference score "
            "of an item is the mean over its reference raters.",
            *notes,
        ],
    )
    return fig


def _gap_bars(ax, gap: pd.DataFrame, models: list[str]) -> list[float]:
    """One bar with its 95% CI per model, "no data" where a model has no gap; returns the drawn values."""
    values = []
    for x, model in enumerate(models):
        if model not in gap.index:
            no_data(ax, "no data", x, 0, data=True, rotation=90)
            continue
        row = gap.loc[[model]]
        value = row["gap"].iloc[0]
        ax.bar(x, value, width=0.6, color=model_color(model, models))
        ax.errorbar(x, value, yerr=ci_errors(row, "gap"), fmt="none", ecolor="#222222", capsize=3)
        values += [value, row["ci_low"].iloc[0], row["ci_high"].iloc[0]]
    return values


def _published_gaps(ax, published_gap: pd.DataFrame | None, models: list[str]) -> tuple[list[float], set[str]]:
    """The published gaps of the study's models as hollow diamonds; returns their values and labels."""
    if published_gap is None:
        return [], set()
    part = published_gap[published_gap["model"].isin(models)]
    for _, p in part.iterrows():
        ax.plot(models.index(p["model"]), p["gap"], zorder=4, **PUBLISHED_MARKER)
    return list(part["gap"]), set(part["label"])


@styled
def goal_gap_figure(
    agreement: Agreement,
    *,
    published_gap: pd.DataFrame | None = None,
    models: Sequence[str] = MODEL_ORDER,
    notes: Sequence[str] = (),
) -> Figure:
    """Judge minus reference goal score per model (95% CI), beside the paper's GPT-4 minus human gap."""
    models = list(models)
    fig = new_figure(8, 4.4)
    ax = fig.add_subplot()
    gap = agreement.gap.set_index("model") if agreement.available and not agreement.gap.empty else pd.DataFrame()
    values = _gap_bars(ax, gap, models)
    published, labels = _published_gaps(ax, published_gap, models)
    values += published
    ns = {m: int(gap.loc[m, "n"]) for m in models if m in gap.index}
    ax.set_xticks(
        range(len(models)), [f"{model_label(m)}\n" + (f"n={ns[m]}" if m in ns else "—") for m in models]
    )
    span = max([1.0, *[abs(v) * 1.15 for v in values if pd.notna(v)]])
    ax.set_ylim(-span, span * (1.35 if labels else 1))  # headroom for the legend
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.axhline(0, color="#888888", linewidth=0.7)
    who = _who(agreement) if agreement.available else "no reference ratings"
    ax.set_ylabel("goal gap: judge − reference (goal points)")
    ax.set_title(
        textwrap.fill(f"Goal gap per model: judge {agreement.judge or '?'} − {who}", 80),
        loc="left",
        fontweight="bold",
    )
    handles = [published_handle(lbl) for lbl in sorted(labels)]
    if handles:
        ax.legend(handles=handles, frameon=False, loc="upper left")
    if not agreement.available:
        no_data(ax, f"no data: {agreement.note}", 0.5, 0.85)
    caption(
        fig,
        [
            f"Bars: mean over rated agents of (judge − reference) with 95% CI ({CI_METHOD}), over every "
            "evaluation episode with reference ratings; positive = the judge rates goals higher than "
            "the reference raters. The paper's gap is GPT-4 minus human ratings on SOTOPIA-hard.",
            *notes,
        ],
    )
    return fig
