"""Training: the loss curve of every adapter, and the judge's goal scores of the collected training
data before and after filtering."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .style import (
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


@styled
def training_loss_figure(losses: pd.DataFrame, *, notes: Sequence[str] = ()) -> Figure:
    """Training loss per optimizer step for every adapter (04_train/<adapter>/loss_curve.json)."""
    if losses.empty:
        return no_data_figure("Training loss", "no data: no loss curves under 04_train/")
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
    return fig


@styled
def training_scores_figure(training: pd.DataFrame, *, notes: Sequence[str] = ()) -> Figure:
    """Goal scores of the collected training data per source and round: every (episode, agent) and
    the ones filtering kept."""
    if training.empty:
        return no_data_figure(
            "Goal scores of the training data", "no data: no rated episodes under 02_collect/"
        )
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
    figure_title(fig, "Goal scores of the training data before and after filtering")
    caption(
        fig,
        [
            "Kept = has examples in 03_filter/<source>_round<k>.sft.jsonl (a kept agent whose "
            "turns were all 'none' leaves no example and is not counted).",
            *notes,
        ],
    )
    return fig
