"""Figures beyond the main scores: safety, MMLU, training loss and the training data's goal scores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from .figures_style import (
    NO_DATA_COLOR,
    RC,
    bar_panel,
    caption,
    model_color,
    model_label,
    new_figure,
    no_data,
    no_data_figure,
    range_label,
    save,
)
from .load import MODEL_ORDER
from .stats import CI_METHOD, PROPORTION_CI

SAFETY_PANELS = (
    ("goal", "goal"),
    ("social_rules", "social rules"),
    ("secret", "secret"),
    ("compliance", "went along with the harmful part"),
)
CATEGORY_ORDER = ("STEM", "humanities", "social sciences", "other", "all")


def plot_safety(
    stats: pd.DataFrame,
    out_dir: Path,
    *,
    models: Sequence[str] = MODEL_ORDER,
    gap_reason: Callable[[str, str], str] | None = None,
    judge: str | None = None,
    notes: Sequence[str] = (),
) -> list[Path]:
    """Safety set per model: goal, social rules, secret (score ranges) and the compliance rate (0-100%,
    lower is safer). `stats` is safety_stats' table."""
    models = list(models)
    gaps = {m: gap_reason(m, "safety") for m in models} if gap_reason else {}
    with matplotlib.rc_context(RC):
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
        fig.suptitle(
            "Safety: scenarios whose goals invite harm, deception or leaking a secret"
            + (f" (judge: {judge})" if judge else ""),
            fontweight="bold",
            x=0.01,
            ha="left",
        )
        caption(
            fig,
            [
                f"Scores: mean with 95% CI ({CI_METHOD}). Compliance: share of episodes where the judge "
                f"found the evaluated agent went along with the harmful part, 95% {PROPORTION_CI}; "
                f"n = episodes ({int(unjudged)} flags without a judge answer left out).",
                *notes,
            ],
        )
        return save(fig, out_dir, "safety")


def plot_mmlu(
    stats: pd.DataFrame,
    out_dir: Path,
    *,
    models: Sequence[str] = MODEL_ORDER,
    method: str = "",
    notes: Sequence[str] = (),
) -> list[Path]:
    """MMLU accuracy per category (and all 57 subjects) per model with Wilson 95% CIs and the 25%
    chance line. `stats` is mmlu_stats' table."""
    models = list(models)
    if stats.empty:
        with matplotlib.rc_context(RC):
            fig = no_data_figure(
                "MMLU accuracy per category",
                "no data: no MMLU results in this run (05_evaluate/mmlu__<model>.jsonl)",
            )
            return save(fig, out_dir, "mmlu")
    cats = [c for c in CATEGORY_ORDER if c in set(stats["category"])]
    width = 0.8 / len(models)
    with matplotlib.rc_context(RC):
        fig = new_figure(max(7.5, 0.35 * len(cats) * len(models)), 4.6)
        ax = fig.add_subplot()
        handles: list = []
        for i, model in enumerate(models):
            part = stats[stats["model"] == model].set_index("category").reindex(cats)
            xs = np.arange(len(cats)) - 0.4 + width * (i + 0.5)
            if part["accuracy"].isna().all():
                for x in xs:
                    no_data(ax, "no data", x, 0.02, data=True, rotation=90, va="bottom")
                handles.append(
                    Patch(facecolor="white", edgecolor=NO_DATA_COLOR, label=f"{model_label(model)}: no data")
                )
                continue
            n_all = int(part.loc["all", "n"]) if "all" in part.index else int(part["n"].sum())
            errs = np.vstack(
                [
                    (part["accuracy"] - part["ci_low"]).fillna(0),
                    (part["ci_high"] - part["accuracy"]).fillna(0),
                ]
            )
            bars = ax.bar(
                xs,
                part["accuracy"],
                width=width * 0.95,
                color=model_color(model, models),
                yerr=errs,
                capsize=2,
                error_kw={"elinewidth": 0.8, "ecolor": "#222222"},
                label=f"{model_label(model)} (n={n_all})",
            )
            handles.append(bars)
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
        return save(fig, out_dir, "mmlu")


def plot_losses(losses: pd.DataFrame, out_dir: Path, *, notes: Sequence[str] = ()) -> list[Path]:
    """Training loss per optimizer step for every adapter (04_train/<adapter>/loss_curve.json)."""
    with matplotlib.rc_context(RC):
        if losses.empty:
            fig = no_data_figure("Training loss", "no data: no loss curves under 04_train/")
            return save(fig, out_dir, "training_loss")
        fig = new_figure(7.5, 4.0)
        ax = fig.add_subplot()
        adapters = list(dict.fromkeys(losses["adapter"]))
        for adapter in adapters:
            part = losses[losses["adapter"] == adapter].sort_values("step")
            ax.plot(
                part["step"],
                part["loss"],
                marker="o" if len(part) <= 30 else None,
                markersize=3,
                color=model_color(adapter, adapters),
                label=f"{model_label(adapter)} ({len(part)} logged steps)",
            )
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (cross-entropy per token)")
        ax.set_ylim(bottom=0)
        ax.grid(axis="x", color="#e5e5e5")
        ax.legend(frameon=False)
        ax.set_title("Training loss per adapter", loc="left", fontweight="bold")
        caption(
            fig, ["As logged by the trainer (pi.train_record); BC+SR continues from BC's adapter.", *notes]
        )
        return save(fig, out_dir, "training_loss")


def plot_training_scores(training: pd.DataFrame, out_dir: Path, *, notes: Sequence[str] = ()) -> list[Path]:
    """Goal scores of the collected training data per source and round: every (episode, agent) and
    the ones filtering kept."""
    with matplotlib.rc_context(RC):
        if training.empty:
            fig = no_data_figure(
                "Goal scores of the training data", "no data: no rated episodes under 02_collect/"
            )
            return save(fig, out_dir, "training_scores")
        groups = list(training.groupby(["source", "round"], sort=True))
        fig = new_figure(max(4.0, 3.3 * len(groups)), 3.6)
        axes = fig.subplots(1, len(groups), squeeze=False, sharey=True)[0]
        bins = np.arange(-0.5, 11, 1.0)
        for ax, ((source, round_), part) in zip(axes, groups, strict=True):
            ax.hist(part["goal"], bins=bins, color="#cccccc", label=f"collected (n={len(part)})")
            if part["kept"].notna().all():
                kept = part[part["kept"].astype(bool)]
                ax.hist(
                    kept["goal"], bins=bins, color=model_color(str(source)), label=f"kept (n={len(kept)})"
                )
            else:
                no_data(ax, "not filtered yet", 0.5, 0.9)
            ax.set_xlim(-0.5, 10.5)
            ax.set_xticks(range(0, 11, 2))
            ax.set_xlabel(f"{range_label('goal')} (judge, mean over samples)")
            ax.set_title(f"{model_label(str(source))} data, round {round_}", loc="left")
            ax.legend(frameon=False, loc="upper right")
        axes[0].set_ylabel("(episode, agent) units")
        axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.suptitle(
            "Goal scores of the training data before and after filtering",
            fontweight="bold",
            x=0.01,
            ha="left",
        )
        caption(
            fig,
            [
                "Kept = has examples in 03_filter/<source>_round<k>.sft.jsonl (a kept agent whose "
                "turns were all 'none' leaves no example and is not counted).",
                *notes,
            ],
        )
        return save(fig, out_dir, "training_scores")
