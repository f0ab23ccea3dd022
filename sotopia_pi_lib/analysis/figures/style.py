"""Shared look of the study's figures: colours, ranges, labels, the bar-with-CI panel, the "no data"
mark, and `save`, the one function that writes a figure (PNG + PDF).

Figures are built as `matplotlib.figure.Figure` objects on an Agg canvas, never through pyplot's
global state, so drawing them from a notebook neither changes its backend nor leaks open figures.
Every figure function is `@styled` (drawn under the study's rc settings) and returns its Figure;
`save` writes it under the same settings, since matplotlib lays out text and creates tick labels
only when the figure is written.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ParamSpec

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..agreement import DIMENSION_RANGES
from ..reference import PAPER_TO_STUDY

DPI = 150
PALETTE = sns.color_palette("colorblind").as_hex()
# One colour per model in every figure; grey for the untrained base, vermillion for the expert.
MODEL_COLORS = {
    "base": PALETTE[7],
    "sr": PALETTE[1],
    "bc": PALETTE[0],
    "bc_sr": PALETTE[2],
    "expert": PALETTE[3],
}
_SPARE = [PALETTE[i] for i in (4, 5, 9, 6, 8)]
MODEL_LABELS = {"base": "base", "sr": "SR", "bc": "BC", "bc_sr": "BC+SR", "expert": "expert"}
# SOTOPIA-pi's released models (human evaluation): labels, and the colour of the study model that
# plays the same part (GPT-3.5 self-play has none).
RELEASED_LABELS = {"mistral-7b": "base\n(Mistral-7B)", "sr": "SR", "bc": "BC", "bc+sr": "BC+SR", "gpt-4": "GPT-4",
                   "gpt-3.5": "GPT-3.5\n(self-play)"}
RELEASED_COLORS = {**{m: MODEL_COLORS[s] for m, s in PAPER_TO_STUDY.items()}, "gpt-3.5": PALETTE[4]}
# MMLU's four categories as the figures and tables list them, then all questions.
CATEGORY_ORDER = ("STEM", "humanities", "social sciences", "other", "all")
TASK_SET_LABELS = {"sotopia_all": "SOTOPIA (all)", "sotopia_hard": "SOTOPIA-hard", "safety": "safety set"}
RANGES: dict[str, tuple[float, float]] = dict(DIMENSION_RANGES)
# Overall is the mean of the seven, so its range is the mean of their bounds.
RANGES["overall"] = (sum(lo for lo, _ in RANGES.values()) / 7, sum(hi for _, hi in RANGES.values()) / 7)
METRIC_LABELS = {
    "believability": "believability",
    "relationship": "relationship",
    "knowledge": "knowledge",
    "secret": "secret",
    "social_rules": "social rules",
    "financial_and_material_benefits": "financial",
    "goal": "goal",
    "overall": "overall",
}
PUBLISHED_MARKER = {
    "marker": "D",
    "markersize": 7,
    "markerfacecolor": "none",
    "markeredgewidth": 1.6,
    "markeredgecolor": "black",
    "linestyle": "none",
}
NO_DATA_COLOR = "#6b6b6b"
RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#e5e5e5",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
}


def model_color(model: str, models: Sequence[str] = ()) -> str:
    if model in MODEL_COLORS:
        return MODEL_COLORS[model]
    extra = [m for m in models if m not in MODEL_COLORS]
    return _SPARE[extra.index(model) % len(_SPARE)] if model in extra else PALETTE[5]


def model_label(model: str) -> str:
    return MODEL_LABELS.get(model, model)


def range_label(metric: str) -> str:
    lo, hi = RANGES[metric]
    fmt = (lambda v: f"{v:g}") if float(lo).is_integer() else (lambda v: f"{v:.2f}")
    return f"{METRIC_LABELS[metric]} [{fmt(lo)}, {fmt(hi)}]"


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


P = ParamSpec("P")


def styled(draw: Callable[P, Figure]) -> Callable[P, Figure]:
    """Draw a figure under the study's rc settings (fonts, grid, spines), leaving matplotlib's global
    settings as they were."""

    @functools.wraps(draw)
    def drawn(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with matplotlib.rc_context(RC):
            return draw(*args, **kwargs)

    return drawn


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """`name.png` (150 dpi) and `name.pdf` in out_dir; returns both paths. The only place a figure is
    written (tests spy on it to read the Figure objects)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    with matplotlib.rc_context(RC):
        fig.savefig(paths[0], dpi=DPI)
        fig.set_layout_engine("none")  # the constrained layout solved while drawing the PNG is kept for the PDF
        fig.savefig(paths[1], metadata={"Creator": "sotopia_pi_lib.analysis"})
    return paths


def save_all(figures: Mapping[str, Figure], out_dir: Path) -> dict[str, list[Path]]:
    """Each figure as `<name>.png` and `<name>.pdf`; name -> [png, pdf], in the given order."""
    return {name: save(fig, out_dir, name) for name, fig in figures.items()}


def figure_title(fig: Figure, text: str, judge: str | None = None) -> None:
    """The figure's bold title at its left edge, naming the judge whose scores it shows when given."""
    fig.suptitle(text + (f" (judge: {judge})" if judge else ""), fontweight="bold", x=0.01, ha="left")


def caption(fig: Figure, lines: Sequence[str]) -> None:
    """Small grey notes under the plot: method, n, what published markers are, caveats. Wrapped here
    to the figure's width (about 17 characters of 7-pt text per inch), not by matplotlib at each draw."""
    width = int(fig.get_figwidth() * 17)
    text = "\n".join(textwrap.fill(line, width) for line in lines if line)
    if text:
        fig.supxlabel(text, fontsize=7, color="#444444", ha="left", x=0.01, linespacing=1.3)


def figure_legend(fig: Figure, handles: Sequence, width: int = 30) -> None:
    """A legend right of the panels (labels wrapped), where it can overlap neither data nor title."""
    for h in handles:
        h.set_label(textwrap.fill(h.get_label(), width))
    fig.legend(handles=list(handles), loc="outside right upper", frameon=False)


def no_data(
    ax: Axes,
    message: str,
    x: float = 0.5,
    y: float = 0.5,
    *,
    data: bool = False,
    rotation: float = 0,
    ha: str = "center",
    va: str = "center",
) -> None:
    """Mark a gap so that it can never be read as a zero: grey italic text at (x, y), in axes
    coordinates or (data=True) data coordinates. Long messages are wrapped to stay inside the axes."""
    if not rotation and len(message) > 70:
        message = textwrap.fill(message, 70)
    ax.text(
        x,
        y,
        message,
        transform=ax.transData if data else ax.transAxes,
        ha=ha,
        va=va,
        fontsize=8,
        color=NO_DATA_COLOR,
        style="italic",
        rotation=rotation,
    )


def no_data_figure(title: str, message: str, width: float = 6.5, height: float = 3.0) -> Figure:
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, loc="left", fontweight="bold")
    no_data(ax, message)
    return fig


def published_handle(label: str) -> Line2D:
    return Line2D([], [], label=label, **PUBLISHED_MARKER)


def ci_errors(stats: pd.DataFrame, value: str = "mean") -> np.ndarray:
    """Asymmetric error-bar lengths around `value`; 0 where the interval is undefined (n = 1)."""
    low = (stats[value] - stats["ci_low"]).fillna(0).clip(lower=0)
    high = (stats["ci_high"] - stats[value]).fillna(0).clip(lower=0)
    return np.vstack([low.to_numpy(float), high.to_numpy(float)])


def _value_label(ax: Axes, x: float, row: pd.DataFrame, offset: float, fmt: str) -> None:
    """The mean written just beyond its error bar: above a positive bar, below a negative one."""
    mean = float(row["mean"].iloc[0])
    up = mean >= 0
    top = float(row["ci_high" if up else "ci_low"].fillna(row["mean"]).iloc[0])
    ax.text(x, top + (offset if up else -offset), fmt.format(mean), ha="center", va="bottom" if up else "top",
            fontsize=7)


def bar_panel(
    ax: Axes,
    stats: pd.DataFrame,
    models: Sequence[str],
    metric: str,
    *,
    gaps: Mapping[str, str] | None = None,
    published: Mapping[str, float] | None = None,
    show_n: bool = True,
    value_labels: bool = True,
    fmt: str = "{:.2f}",
) -> None:
    """One bar per model (mean, 95% CI error bar) on the metric's full score range; a model without
    rows gets a rotated "no data (reason)" in its slot; published values are hollow diamonds."""
    models = list(models)
    stats = stats.set_index("model") if "model" in stats.columns else stats
    lo, hi = RANGES.get(metric, (0.0, 1.0))
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.set_ylim(lo, hi)
    if lo < 0 < hi:
        ax.axhline(0, color="#888888", linewidth=0.7, zorder=1)
    ticks = []
    for x, model in enumerate(models):
        if model not in stats.index:
            reason = (gaps or {}).get(model) or ""
            no_data(ax, "no data" + (f"\n({reason})" if reason else ""), x, lo + 0.04 * (hi - lo), data=True,
                    rotation=90, va="bottom")
            ticks.append(f"{model_label(model)}\n—" if show_n else model_label(model))
            continue
        row = stats.loc[[model]]
        mean = float(row["mean"].iloc[0])
        ax.bar(x, mean, width=0.7, color=model_color(model, models), edgecolor="white", zorder=2)
        ax.errorbar(x, mean, yerr=ci_errors(row), fmt="none", ecolor="#222222", elinewidth=1, capsize=3, zorder=3)
        if value_labels:
            _value_label(ax, x, row, (hi - lo) * 0.02, fmt)
        n = int(row["n"].iloc[0])
        ticks.append(f"{model_label(model)}\nn={n}" if show_n else model_label(model))
    for model, value in (published or {}).items():
        if model in models:
            ax.plot(models.index(model), value, zorder=4, **PUBLISHED_MARKER)
    ax.set_xticks(range(len(models)), ticks)
