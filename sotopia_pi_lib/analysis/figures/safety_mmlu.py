"""Safety and MMLU per model: the safety set's goal, social rules and secret scores with the share of
episodes where the evaluated agent went along with the harmful part; MMLU accuracy per category with
the chance line."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from ..load import MODEL_ORDER
from ..stats import CI_METHOD, PROPORTION_CI
from .style import (
    CATEGORY_ORDER,
    NO_DATA_COLOR,
    bar_panel,
    caption,
    figure_title,
    model_color,
    model_label,
    new_figure,
    no_data,
    no_data_figure,
    range_label,
    styled,
)

SAFETY_PANELS = (
    ("goal", "goal"),
    ("social_rules", "social rules"),
    ("secret", "secret"),
    ("compliance", "went along with the harmful part"),
)


@styled
def safety_figure(
    stats: pd.DataFrame,
    *,
    models: Sequence[str] = MODEL_ORDER,
    gap_reason: Callable[[str, str], str] | None = None,
    judge: str | None = None,
    notes: Sequence[str] = (),
) -> Figure:
    """Safety set per model: goal, social rules, secret (score ranges) and the compliance rate (0-100%,
    lower is safer). `stats` is safety_stats' table."""
    models = list(models)
    gaps = {m: gap_reason(m, "safety") for m in models} if gap_reason else {}
    fig = new_figure(12, 4.2)
    axes = fig.subplots(1, 4)
    for ax, (metric, title) in zip(axes, SAFETY_PANELS, strict=True):
        part = stats[stats["metric"] == metric]
        if metric == "compliance":
            missing = {m: "no compliance flags" for m in models if m not in set(part["model"])}
            bar_panel(ax, part, models, "compliance", gaps=missing, fmt="{:.0%}")
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax.set_ylabel("share of judged episodes")
            ax.set_title(f"{title}\n(lower is safer)", loc="left")
        else:
            bar_panel(ax, part, models, metric, gaps=gaps)
            ax.set_ylabel(f"{range_label(metric)} (points)")
            ax.set_title(title + ("\n(0 = no violation)" if metric != "goal" else "\n"), loc="left")
    unjudged = (
        stats.loc[stats["metric"] == "compliance", "n_unjudged"].sum() if "n_unjudged" in stats else 0
    )
    figure_title(fig, "Safety: scenarios whose goals invite harm, deception or leaking a secret", judge)
    caption(
        fig,
        [
            f"Scores: mean with 95% CI ({CI_METHOD}). Compliance: share of episodes where the judge "
            f"found the evaluated agent went along with the harmful part, 95% {PROPORTION_CI}; "
            f"n = episodes ({int(unjudged)} flags without a judge answer left out).",
            *notes,
        ],
    )
    return fig


def _mmlu_bars(ax, stats: pd.DataFrame, model: str, models: list[str], cats: list[str], i: int):
    """One model's accuracy per category (Wilson 95% CI), "no data" in its slots when it has none;
    returns its legend handle."""
    width = 0.8 / len(models)
    part = stats[stats["model"] == model].set_index("category").reindex(cats)
    xs = np.arange(len(cats)) - 0.4 + width * (i + 0.5)
    if part["accuracy"].isna().all():
        for x in xs:
            no_data(ax, "no data", x, 0.02, data=True, rotation=90, va="bottom")
        return Patch(facecolor="white", edgecolor=NO_DATA_COLOR, label=f"{model_label(model)}: no data")
    n_all = int(part.loc["all", "n"]) if "all" in part.index else int(part["n"].sum())
    errs = np.vstack([(part["accuracy"] - part["ci_low"]).fillna(0), (part["ci_high"] - part["accuracy"]).fillna(0)])
    return ax.bar(xs, part["accuracy"], width=width * 0.95, color=model_color(model, models), yerr=errs, capsize=2,
                  error_kw={"elinewidth": 0.8, "ecolor": "#222222"}, label=f"{model_label(model)} (n={n_all})")


@styled
def mmlu_figure(
    stats: pd.DataFrame,
    *,
    models: Sequence[str] = MODEL_ORDER,
    method: str = "",
    notes: Sequence[str] = (),
) -> Figure:
    """MMLU accuracy per category (and all 57 subjects) per model with Wilson 95% CIs and the 25%
    chance line. `stats` is mmlu_stats' table."""
    models = list(models)
    if stats.empty:
        return no_data_figure(
            "MMLU accuracy per category",
            "no data: no MMLU results in this run (05_evaluate/mmlu__<model>.jsonl)",
        )
    cats = [c for c in CATEGORY_ORDER if c in set(stats["category"])]
    fig = new_figure(max(7.5, 0.35 * len(cats) * len(models)), 4.6)
    ax = fig.add_subplot()
    handles = [_mmlu_bars(ax, stats, model, models, cats, i) for i, model in enumerate(models)]
    chance = ax.axhline(0.25, color="black", linestyle="--", linewidth=1, label="chance (25%)")
    handles.append(chance)
    ax.set_xticks(range(len(cats)), [c if c != "all" else "all questions" for c in cats])
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("accuracy (% of questions)")
    ax.legend(handles=handles, loc="upper left", ncols=3, frameon=False)
    ax.set_title(
        "MMLU accuracy per category" + (f" ({method})" if method else ""), loc="left", fontweight="bold"
    )
    caption(
        fig,
        [
            f"Error bars: 95% {PROPORTION_CI}; a reply without an answer letter counts as wrong. "
            "n = questions per model (all categories).",
            *notes,
        ],
    )
    return fig


def mmlu_method(mmlu: pd.DataFrame) -> str:
    """How the MMLU answers were read (shots, log-probs or a constrained letter), for the figure's title."""
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
