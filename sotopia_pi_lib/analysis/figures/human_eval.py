"""Figures of SOTOPIA-pi's released human evaluation (see `human_eval`): the paper's GPT-4-versus-human
gap figure rebuilt from data, GPT-4's released scores against the annotators per episode, every judge
against the annotators, and the agreement between annotators. PNG + PDF each, like every figure.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..agreement import DIMENSIONS
from ..human_eval import RELEASED_GPT4, RELEASED_MODELS, HumanEvalTables
from .style import (
    METRIC_LABELS,
    PALETTE,
    PUBLISHED_MARKER,
    RANGES,
    RELEASED_COLORS,
    RELEASED_LABELS,
    caption,
    ci_errors,
    figure_title,
    new_figure,
    no_data,
    published_handle,
    save_all,
    styled,
)

SOURCE = ("SOTOPIA-pi's released human evaluation: SOTOPIA-hard, tested model vs a GPT-3.5 partner, 2 "
          "annotators per episode")
_JUDGE_COLORS = [PALETTE[i] for i in (3, 0, 2, 1, 4, 5)]


def _judge_color(label: str, judges: Sequence[str]) -> str:
    return _JUDGE_COLORS[list(judges).index(label) % len(_JUDGE_COLORS)]


@styled
def human_gap_figure(t: HumanEvalTables) -> Figure:
    """The paper's figure: human goal of each model (computed here, 95% CI) beside GPT-4's published
    goal on the same task set, the gap between them annotated with the paper's value."""
    g = t.gap_figure.set_index("model")
    models = [m for m in RELEASED_MODELS if m in g.index]
    xs = np.arange(len(models))
    fig = new_figure(8.5, 5)
    ax = fig.add_subplot()
    human = g.loc[models]
    err = np.vstack([(human["human_goal"] - human["human_ci_low"]).clip(lower=0),
                     (human["human_ci_high"] - human["human_goal"]).clip(lower=0)])
    ax.errorbar(xs, human["human_goal"], yerr=err, fmt="o-", color="#de8f05", linewidth=2, capsize=3,
                label="human goal (computed here from the released ratings, 95% CI)")
    pub = human["gpt4_goal_published"]
    ax.plot(xs[pub.notna()], pub[pub.notna()], "o-", color="#0173b2", linewidth=2,
            label="GPT-4-rated goal (published in the paper)")
    rel = human["gpt4_goal_released"]
    if rel.notna().any():
        ax.plot(xs[rel.notna()], rel[rel.notna()], zorder=5, **PUBLISHED_MARKER | {"markeredgecolor": "#0173b2",
                "markersize": 11}, label="GPT-4-rated goal from GPT-4's released scores of the same episodes")
    for x, model in zip(xs, models, strict=True):
        row = g.loc[model]
        ax.text(x, row["human_goal"] - 0.35, f"{row['human_goal']:.2f}", ha="center", va="top", fontsize=8)
        if pd.notna(row["gpt4_goal_published"]):
            ax.annotate("", (x, row["gpt4_goal_published"]), (x, row["human_goal"]),
                        arrowprops={"arrowstyle": "<->", "color": "#444444", "linewidth": 1})
            ax.text(x + 0.07, (row["human_goal"] + row["gpt4_goal_published"]) / 2,
                    f"gap {row['gap']:.2f}\n(paper {row['gap_published']:.2f})", fontsize=7, va="center")
    ax.set_xticks(xs, [f"{RELEASED_LABELS[m]}\nn={int(g.loc[m, 'n'])}" for m in models])
    ax.set_ylim(0, 7.5)
    ax.set_ylabel("goal completion [0, 10]")
    ax.set_title("Goal completion on SOTOPIA-hard: GPT-4's published ratings vs the released human ratings",
                 loc="left", fontweight="bold")
    ax.legend(frameon=False, loc="upper left")
    caption(fig, [f"{SOURCE}. Human goal: the tested side's score averaged over its annotators, then over "
                  "episodes (n = tested sides; GPT-3.5 plays both). GPT-4-rated goals: the paper's figure "
                  "(plot_code in sotopia-pi); the paper gives no GPT-4-rated value for GPT-3.5 self-play."])
    return fig


@styled
def gpt4_vs_human_figure(t: HumanEvalTables) -> Figure:
    """Per dimension, GPT-4's released score of each agent side of the 28 GPT-4 episodes against the
    annotators' mean score of that side."""
    judge = t.judge_items[RELEASED_GPT4]
    human = t.ratings.groupby(["episode_id", "agent", "dimension"], as_index=False)["score"].mean()
    both = judge.merge(human, on=["episode_id", "agent", "dimension"], suffixes=("_gpt4", "_human"))
    stats = t.judge_vs_human[t.judge_vs_human["judge"] == RELEASED_GPT4].set_index("dimension")
    fig = new_figure(12, 6)
    axes = fig.subplots(2, 4).ravel()
    for ax, dim in zip(axes, DIMENSIONS, strict=False):
        part = both[both["dimension"] == dim]
        lo, hi = RANGES[dim]
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, size=len(part))
        ax.scatter(part["score_human"], part["score_gpt4"] + jitter, s=14, alpha=0.7,
                   c=[RELEASED_COLORS["gpt-4"] if t_ else "#888888" for t_ in part["tested"]])
        ax.plot([lo, hi], [lo, hi], color="#bbbbbb", linewidth=0.8)
        ax.set_xlim(lo - 0.5, hi + 0.5)
        ax.set_ylim(lo - 0.5, hi + 0.5)
        r = stats.loc[dim] if dim in stats.index else None
        title = METRIC_LABELS[dim] + ("" if r is None or pd.isna(r["pearson"]) else f": r = {r['pearson']:.2f}")
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel("annotators' mean", fontsize=7)
        ax.set_ylabel("GPT-4", fontsize=7)
        ax.grid(True, axis="both")
    axes[-1].set_axis_off()
    n = int(stats["n"].max()) if len(stats) else 0
    figure_title(fig, "GPT-4's released scores vs the annotators, per agent side of the GPT-4 episodes")
    caption(fig, [f"{SOURCE}. n = {n} agent sides (28 episodes x 2); GPT-4's side in colour, its GPT-3.5 "
                  "partner in grey; GPT-4 scores jittered vertically by up to 0.15 to show ties. "
                  "GPT-4's scores: SOTOPIA's released complete_gpt_score.json."])
    return fig


def _correlation_panel(ax, vs: pd.DataFrame, judges: list[str]) -> None:
    dims = list(reversed(DIMENSIONS))
    ys = np.arange(len(dims))
    step = 0.6 / max(len(judges), 1)
    for k, judge in enumerate(judges):
        part = vs[vs["judge"] == judge].set_index("dimension").reindex(dims)
        r = part["pearson"].astype(float)
        err = np.vstack([(r - part["pearson_ci_low"]).fillna(0), (part["pearson_ci_high"] - r).fillna(0)])
        y = ys + 0.3 - step * (k + 0.5)
        n = int(part["n"].max()) if part["n"].notna().any() else 0
        ax.errorbar(r, y, xerr=err, fmt="o", markersize=4, capsize=2, color=_judge_color(judge, judges),
                    label=textwrap.fill(f"{judge} (n = {n} sides)", 40))
        for yy, value in zip(y, r, strict=True):
            if pd.isna(value):
                no_data(ax, "n/a", -0.95, yy, data=True, ha="left")
    ax.axvline(0, color="#888888", linewidth=0.7)
    ax.set_xlim(-1, 1)
    ax.set_yticks(ys, [METRIC_LABELS[d] for d in dims])
    ax.set_xlabel("Pearson r with the annotators' mean (Fisher-z 95% CI)")
    ax.set_title("Correlation per dimension", loc="left", fontsize=9)
    ax.grid(axis="x", color="#e5e5e5")
    ax.grid(axis="y", visible=False)


def _gap_panel(ax, gap: pd.DataFrame, judges: list[str], published: pd.Series) -> None:
    xs = np.arange(len(RELEASED_MODELS))
    width = 0.8 / max(len(judges), 1)
    for k, judge in enumerate(judges):
        part = gap[gap["judge"] == judge].set_index("model")
        for x, model in zip(xs, RELEASED_MODELS, strict=True):
            if model not in part.index:
                continue
            row = part.loc[[model]]
            xx = x - 0.4 + width * (k + 0.5)
            ax.bar(xx, row["gap"].iloc[0], width=width * 0.9, color=_judge_color(judge, judges))
            ax.errorbar(xx, row["gap"].iloc[0], yerr=ci_errors(row, "gap"), fmt="none", ecolor="#222222", capsize=2)
    for x, model in zip(xs, RELEASED_MODELS, strict=True):
        if model in published.index:
            ax.plot(x, published[model], zorder=4, **PUBLISHED_MARKER)
    ax.axhline(0, color="#888888", linewidth=0.7)
    ax.set_xticks(xs, [RELEASED_LABELS[m] for m in RELEASED_MODELS])
    ax.set_ylabel("goal: judge − annotators (tested sides)")
    ax.set_title("Goal gap per model", loc="left", fontsize=9)


@styled
def judge_vs_human_figure(t: HumanEvalTables) -> Figure:
    """Every judge (GPT-4's released scores; the study's judge where 05 rated released episodes) against
    the annotators: per dimension Pearson r, and per model the judge-minus-human goal gap."""
    judges = t.judges
    published = t.gap_figure.set_index("model")["gap_published"].dropna()
    fig = new_figure(12, 4.8)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.3])
    _correlation_panel(left, t.judge_vs_human, judges)
    _gap_panel(right, t.judge_gap, judges, published)
    handles, labels = left.get_legend_handles_labels()
    fig.legend([*handles, published_handle("published GPT-4 − human gap (paper)")],
               [*labels, "published GPT-4 − human gap (paper)"], loc="outside right upper", frameon=False)
    figure_title(fig, "Judges against SOTOPIA-pi's human annotators")
    caption(fig, [f"{SOURCE}. Each judge is compared on the released episodes it rated (the study's judge: "
                  "the subset notebook 05 rated); the annotators' score of a side is the mean of its "
                  "annotators. Gap bars: 95% bootstrap CI over tested sides.", *t.notes])
    return fig


@styled
def human_agreement_figure(t: HumanEvalTables) -> Figure:
    """Krippendorff's alpha (interval) between the annotators, per model and dimension, pooled last."""
    a = t.agreement
    rows = [m for m in [*RELEASED_MODELS, "all"] if m in set(a["model"])]
    grid = a.pivot(index="model", columns="dimension", values="alpha").reindex(index=rows, columns=list(DIMENSIONS))
    fig = new_figure(9, 4.2)
    ax = fig.add_subplot()
    im = ax.imshow(grid.to_numpy(float), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    for i, model in enumerate(rows):
        for j, dim in enumerate(DIMENSIONS):
            v = grid.loc[model, dim]
            ax.text(j, i, "n/a" if pd.isna(v) else f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if pd.notna(v) and abs(v) > 0.6 else "black")
    ax.set_xticks(range(len(DIMENSIONS)), [METRIC_LABELS[d] for d in DIMENSIONS])
    ax.set_yticks(range(len(rows)), [RELEASED_LABELS.get(m, "pooled").replace("\n", " ") for m in rows])
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="Krippendorff's alpha (interval)")
    ax.set_title("Agreement between SOTOPIA-pi's annotators", loc="left", fontweight="bold")
    caption(fig, [f"{SOURCE}. Items: both agent sides of each episode; one rating per annotator and "
                  "episode (a repeated rating by the same annotator is left out). 1 = perfect agreement, "
                  "0 = chance; n/a: every rating of that cell has the same value (alpha undefined)."])
    return fig


def human_eval_figures(t: HumanEvalTables) -> dict[str, Figure]:
    """Every figure of the released human evaluation, by file name."""
    return {"human_gap": human_gap_figure(t), "gpt4_vs_human": gpt4_vs_human_figure(t),
            "judge_vs_human": judge_vs_human_figure(t), "human_agreement": human_agreement_figure(t)}


def draw_human_eval(t: HumanEvalTables, out_dir: Path) -> dict[str, list[Path]]:
    """Every figure of the released human evaluation, written; name -> [png, pdf]."""
    return save_all(human_eval_figures(t), out_dir)
