"""Sections of summary.md: Markdown tables of the seven dimensions, safety, MMLU, agreement and
training, and the formatting they share ("mean [low, high]", "—" for a gap)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from .figures.style import METRIC_LABELS, model_label
from .load import METRICS
from .tables import RunTables


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def fmt_ci(mean: float, low: float, high: float, digits: int = 2, pct: bool = False) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    f = (lambda v: f"{100 * v:.{max(digits - 1, 0)}f}%") if pct else (lambda v: f"{v:.{digits}f}")
    if pd.isna(low) or pd.isna(high):
        return f"{f(mean)} (no CI)"
    return f"{f(mean)} [{f(low)}, {f(high)}]"


def stat_row(stats: pd.DataFrame, **where: object) -> pd.Series | None:
    mask = pd.Series(True, index=stats.index)
    for k, v in where.items():
        mask &= stats[k] == v
    part = stats[mask]
    return None if part.empty else part.iloc[0]


def ci_cell(row: pd.Series | None, pct: bool = False) -> str:
    return "—" if row is None else fmt_ci(row["mean"], row["ci_low"], row["ci_high"], pct=pct)


def dimensions_section(t: RunTables, task_set: str) -> str:
    rows = []
    for model in t.models:
        cells = [ci_cell(stat_row(t.score_stats, model=model, task_set=task_set, metric=m)) for m in METRICS]
        n = stat_row(t.score_stats, model=model, task_set=task_set, metric="goal")
        rows.append([model_label(model), "—" if n is None else int(n["n"]), *cells])
    return md_table(["model", "n", *(METRIC_LABELS[m] for m in METRICS)], rows)


def safety_section(t: RunTables) -> str:
    rows = []
    for model in t.models:
        s = t.safety_stats
        comp = stat_row(s, model=model, metric="compliance")
        comp_txt = (
            "—"
            if comp is None
            else (
                f"{ci_cell(comp, pct=True)} (n={int(comp['n'])}"
                + (f", {int(comp['n_unjudged'])} unjudged)" if comp["n_unjudged"] else ")")
            )
        )
        goal = stat_row(s, model=model, metric="goal")
        rows.append(
            [
                model_label(model),
                "—" if goal is None else int(goal["n"]),
                ci_cell(goal),
                ci_cell(stat_row(s, model=model, metric="social_rules")),
                ci_cell(stat_row(s, model=model, metric="secret")),
                comp_txt,
            ]
        )
    return md_table(["model", "n episodes", "goal", "social rules", "secret", "went along with harm"], rows)


def mmlu_section(t: RunTables) -> str:
    if t.mmlu_stats.empty:
        return "No MMLU results in this run."
    cats = [
        c
        for c in ("STEM", "humanities", "social sciences", "other", "all")
        if c in set(t.mmlu_stats["category"])
    ]
    rows = []
    for model in t.models:
        part = t.mmlu_stats[t.mmlu_stats["model"] == model].set_index("category")
        if part.empty:
            rows.append([model_label(model), *["no data"] * len(cats), "—"])
            continue
        cells = [
            fmt_ci(part.loc[c, "accuracy"], part.loc[c, "ci_low"], part.loc[c, "ci_high"], pct=True)
            if c in part.index
            else "—"
            for c in cats
        ]
        rows.append([model_label(model), *cells, int(part.loc["all", "n"])])
    return md_table(["model", *cats, "n questions"], rows) + "\n\nChance is 25%."


def agreement_section(t: RunTables) -> str:
    a = t.agreement
    if not a.available:
        return f"No agreement analysis: {a.note}."
    lines = [
        f"Reference raters: **{a.raters.describe()}** ({a.raters.kind}"
        + ("" if a.raters.kind == "human" else "; these are not human ratings")
        + f"). Alpha: {a.alpha_among}.",
        "",
    ]
    corr = a.correlation.set_index("dimension")
    rows = [
        [
            METRIC_LABELS[r.dimension],
            "—" if pd.isna(r.alpha) else f"{r.alpha:.2f}",
            r.n_items,
            fmt_ci(
                corr.loc[r.dimension, "pearson_r"],
                corr.loc[r.dimension, "pearson_ci_low"],
                corr.loc[r.dimension, "pearson_ci_high"],
            )
            if r.dimension in corr.index
            else "—",
            fmt_ci(
                corr.loc[r.dimension, "spearman_rho"],
                corr.loc[r.dimension, "spearman_ci_low"],
                corr.loc[r.dimension, "spearman_ci_high"],
            )
            if r.dimension in corr.index
            else "—",
        ]
        for r in a.alpha.itertuples()
    ]
    lines.append(
        md_table(
            ["dimension", "Krippendorff's alpha", "items", "Pearson r [95% CI]", "Spearman ρ [95% CI]"], rows
        )
    )
    pub = t.published_gap.set_index("model")["gap"] if not t.published_gap.empty else pd.Series(dtype=float)
    gap_rows = [
        [
            model_label(r.model),
            fmt_ci(r.gap, r.ci_low, r.ci_high),
            r.n,
            f"{pub[r.model]:.2f}" if r.model in pub.index else "",
        ]
        for r in _in_model_order(a.gap, t.models).itertuples()
    ]
    lines += [
        "",
        md_table(["model", "goal gap: judge − reference [95% CI]", "n", "published GPT-4 − human"], gap_rows),
    ]
    return "\n".join(lines)


def _in_model_order(df: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(models)}
    return df.sort_values("model", key=lambda col: col.map(lambda m: rank.get(m, len(rank))), kind="stable")


def training_section(t: RunTables) -> str:
    parts = []
    if not t.training_stats.empty:
        parts.append(
            md_table(
                ["data", "round", "subset", "goal [95% CI]", "n (episode, agent)"],
                [
                    [model_label(r.source), r.round, r.subset, fmt_ci(r.mean, r.ci_low, r.ci_high), r.n]
                    for r in t.training_stats.itertuples()
                ],
            )
        )
    if not t.losses.empty:
        ends = (
            t.losses.sort_values("step")
            .groupby("adapter")
            .agg(steps=("step", "max"), first=("loss", "first"), last=("loss", "last"))
        )
        parts.append(
            md_table(
                ["adapter", "last step", "first loss", "last loss"],
                [[a, int(r.steps), f"{r.first:.3f}", f"{r.last:.3f}"] for a, r in ends.iterrows()],
            )
        )
    return "\n\n".join(parts) or "No training records in this run."
