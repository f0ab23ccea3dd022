"""`summary.md`: the run's numbers as Markdown tables, with provenance and the caveats that matter.

Every score is "mean [95% CI]" with its n; a model or task set without data says why. When the
embedded 135M model played any role, the file opens with a note that the scores mean nothing about
social intelligence (they show that the pipeline runs). Sections, in order: provenance, coverage,
goal and overall, each trained model versus base, the seven dimensions, safety, MMLU, rater
agreement, SOTOPIA-pi's released human evaluation, training, notes, figures.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..store.files import atomic_write_text
from .figures.style import CATEGORY_ORDER, METRIC_LABELS, RELEASED_LABELS, TASK_SET_LABELS, model_label
from .human_eval import RELEASED_MODELS, HumanEvalTables
from .load import EVAL_TASK_SETS, METRICS
from .stats import CI_METHOD, P_METHOD, PROPORTION_CI
from .tables import RunTables

# --- Markdown and number formatting -------------------------------------------------------------


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; a cell's "|" is escaped and its line breaks become spaces (figure labels wrap)."""

    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def fmt_ci(mean: float, low: float, high: float, digits: int = 2, pct: bool = False) -> str:
    """ "mean [low, high]"; "—" for a gap, "(no CI)" where the interval is undefined (n = 1)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    f = (lambda v: f"{100 * v:.{max(digits - 1, 0)}f}%") if pct else (lambda v: f"{v:.{digits}f}")
    if pd.isna(low) or pd.isna(high):
        return f"{f(mean)} (no CI)"
    return f"{f(mean)} [{f(low)}, {f(high)}]"


def stat_row(stats: pd.DataFrame, **where: object) -> pd.Series | None:
    """The first row matching every `column=value`, None when there is none (a gap)."""
    mask = pd.Series(True, index=stats.index)
    for k, v in where.items():
        mask &= stats[k] == v
    part = stats[mask]
    return None if part.empty else part.iloc[0]


def ci_cell(row: pd.Series | None, pct: bool = False) -> str:
    return "—" if row is None else fmt_ci(row["mean"], row["ci_low"], row["ci_high"], pct=pct)


# --- the run's results ---------------------------------------------------------------------------


def _caveat(t: RunTables) -> list[str]:
    if not t.info.embedded_roles:
        return []
    return [
        f"> **Note:** this run used the embedded SmolLM2-135M-Instruct model (roles: "
        f"{', '.join(t.info.embedded_roles)}). Its scores mean nothing about social intelligence: a 135M "
        "model cannot show the paper's effect. The run shows that the pipeline works end to end.",
        "",
    ]


def _coverage(t: RunTables) -> str:
    rows = []
    for model in t.models:
        cells = []
        for ts in EVAL_TASK_SETS:
            reason = t.gap_reason(model, ts)
            r = t.coverage[(t.coverage["model"] == model) & (t.coverage["task_set"] == ts)].iloc[0]
            failed = f", {int(r['n_failed'])} abandoned" if r["n_failed"] else ""
            cells.append(
                f"no data ({reason}){failed}" if reason else f"{int(r['n_episodes'])} episodes{failed}"
            )
        rows.append([model_label(model), *cells])
    return md_table(["model", *(TASK_SET_LABELS[ts] for ts in EVAL_TASK_SETS)], rows)


def _published(t: RunTables, model: str, task_set: str, metric: str) -> str:
    row = stat_row(t.published, model=model, task_set=task_set, metric=metric)
    return "" if row is None else f"{row['value']:.2f}"


def _main(t: RunTables) -> str:
    rows = []
    for ts in ("sotopia_all", "sotopia_hard"):
        for model in t.models:
            goal = stat_row(t.score_stats, model=model, task_set=ts, metric="goal")
            overall = stat_row(t.score_stats, model=model, task_set=ts, metric="overall")
            n = "—" if goal is None else int(goal["n"])
            pub = " / ".join(p for p in (_published(t, model, ts, "goal"), _published(t, model, ts, "overall")) if p)
            rows.append([TASK_SET_LABELS[ts], model_label(model), ci_cell(goal), ci_cell(overall), n, pub])
    table = md_table(["task set", "model", "goal [0, 10]", "overall", "n episodes", "published goal / overall"], rows)
    sources = sorted(set(t.published["label"]))
    notes = [f"Published column: {s.removeprefix('published: ')}." for s in sources]
    return "\n\n".join([table, "\n".join(notes)]) if notes else table


def _paired(t: RunTables) -> str:
    if t.paired.empty:
        return "No paired comparison: the base model or the other models have no episodes on the same combos."
    rows = [[TASK_SET_LABELS[r.task_set], r.metric, f"{model_label(r.model_a)} − {model_label(r.model_b)}",
             fmt_ci(r.diff, r.ci_low, r.ci_high), "—" if pd.isna(r.p_value) else f"{r.p_value:.3f}", r.n,
             r.n_unpaired] for r in t.paired.itertuples()]
    return md_table(["task set", "metric", "difference", "mean diff [95% CI]", "p", "n pairs", "unpaired"], rows)


def dimensions_section(t: RunTables, task_set: str) -> str:
    rows = []
    for model in t.models:
        cells = [ci_cell(stat_row(t.score_stats, model=model, task_set=task_set, metric=m)) for m in METRICS]
        n = stat_row(t.score_stats, model=model, task_set=task_set, metric="goal")
        rows.append([model_label(model), "—" if n is None else int(n["n"]), *cells])
    return md_table(["model", "n", *(METRIC_LABELS[m] for m in METRICS)], rows)


def _compliance_cell(comp: pd.Series | None) -> str:
    if comp is None:
        return "—"
    unjudged = f", {int(comp['n_unjudged'])} unjudged" if comp["n_unjudged"] else ""
    return f"{ci_cell(comp, pct=True)} (n={int(comp['n'])}{unjudged})"


def safety_section(t: RunTables) -> str:
    rows = []
    s = t.safety_stats
    for model in t.models:
        goal = stat_row(s, model=model, metric="goal")
        rows.append([model_label(model), "—" if goal is None else int(goal["n"]), ci_cell(goal),
                     ci_cell(stat_row(s, model=model, metric="social_rules")),
                     ci_cell(stat_row(s, model=model, metric="secret")),
                     _compliance_cell(stat_row(s, model=model, metric="compliance"))])
    return md_table(["model", "n episodes", "goal", "social rules", "secret", "went along with harm"], rows)


def mmlu_section(t: RunTables) -> str:
    if t.mmlu_stats.empty:
        return "No MMLU results in this run."
    cats = [c for c in CATEGORY_ORDER if c in set(t.mmlu_stats["category"])]
    rows = []
    for model in t.models:
        part = t.mmlu_stats[t.mmlu_stats["model"] == model].set_index("category")
        if part.empty:
            rows.append([model_label(model), *["no data"] * len(cats), "—"])
            continue
        cells = [fmt_ci(part.loc[c, "accuracy"], part.loc[c, "ci_low"], part.loc[c, "ci_high"], pct=True)
                 if c in part.index else "—" for c in cats]
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

    def coefficient(dim: str, col: str, prefix: str) -> str:
        if dim not in corr.index:
            return "—"
        return fmt_ci(corr.loc[dim, col], corr.loc[dim, f"{prefix}_ci_low"], corr.loc[dim, f"{prefix}_ci_high"])

    rows = [[METRIC_LABELS[r.dimension], "—" if pd.isna(r.alpha) else f"{r.alpha:.2f}", r.n_items,
             coefficient(r.dimension, "pearson_r", "pearson"), coefficient(r.dimension, "spearman_rho", "spearman")]
            for r in a.alpha.itertuples()]
    lines.append(md_table(["dimension", "Krippendorff's alpha", "items", "Pearson r [95% CI]",
                           "Spearman ρ [95% CI]"], rows))
    pub = t.published_gap.set_index("model")["gap"] if not t.published_gap.empty else pd.Series(dtype=float)
    gap_rows = [[model_label(r.model), fmt_ci(r.gap, r.ci_low, r.ci_high), r.n,
                 f"{pub[r.model]:.2f}" if r.model in pub.index else ""]
                for r in _in_model_order(a.gap, t.models).itertuples()]
    lines += ["", md_table(["model", "goal gap: judge − reference [95% CI]", "n", "published GPT-4 − human"],
                           gap_rows)]
    return "\n".join(lines)


def _in_model_order(df: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(models)}
    return df.sort_values("model", key=lambda col: col.map(lambda m: rank.get(m, len(rank))), kind="stable")


def training_section(t: RunTables) -> str:
    parts = []
    if not t.training_stats.empty:
        parts.append(md_table(["data", "round", "subset", "goal [95% CI]", "n (episode, agent)"],
                              [[model_label(r.source), r.round, r.subset, fmt_ci(r.mean, r.ci_low, r.ci_high), r.n]
                               for r in t.training_stats.itertuples()]))
    if not t.losses.empty:
        ends = (t.losses.sort_values("step").groupby("adapter")
                .agg(steps=("step", "max"), first=("loss", "first"), last=("loss", "last")))
        parts.append(md_table(["adapter", "last step", "first loss", "last loss"],
                              [[a, int(r.steps), f"{r.first:.3f}", f"{r.last:.3f}"] for a, r in ends.iterrows()]))
    return "\n\n".join(parts) or "No training records in this run."


# --- SOTOPIA-pi's released human evaluation ------------------------------------------------------


def _num(v: float, digits: int = 2) -> str:
    return "—" if pd.isna(v) else f"{v:.{digits}f}"


def _means(h: HumanEvalTables) -> str:
    m = h.means.set_index(["model", "dimension"])
    g = h.gap_figure.set_index("model")
    rows = []
    for model in [x for x in RELEASED_MODELS if (x, "goal") in m.index]:
        goal, overall = m.loc[(model, "goal")], m.loc[(model, "overall")]
        rows.append([RELEASED_LABELS[model], int(goal["n"]), fmt_ci(goal["mean"], goal["ci_low"], goal["ci_high"]),
                     _num(goal["paper"]), fmt_ci(overall["mean"], overall["ci_low"], overall["ci_high"]),
                     _num(g.loc[model, "gpt4_goal_published"]), _num(g.loc[model, "gap"]),
                     _num(g.loc[model, "gap_published"])])
    return md_table(["model", "n sides", "human goal [95% CI]", "paper (human goal)", "human overall [95% CI]",
                     "GPT-4-rated goal (paper)", "GPT-4 − human", "paper (gap)"], rows)


def _agreement(h: HumanEvalTables) -> str:
    a = h.agreement[h.agreement["model"] == "all"]
    rows = [[METRIC_LABELS[r.dimension], _num(r.alpha), fmt_ci(r.pearson, r.pearson_ci_low, r.pearson_ci_high),
             r.pairs] for r in a.itertuples()]
    return md_table(["dimension", "Krippendorff's α (interval)", "Pearson r [95% CI]", "sides rated by two"], rows)


def _judges(h: HumanEvalTables) -> str:
    vs = h.judge_vs_human
    rows = []
    for judge in h.judges:
        part = vs[vs["judge"] == judge].set_index("dimension")
        cells = [fmt_ci(part.loc[d, "pearson"], part.loc[d, "pearson_ci_low"], part.loc[d, "pearson_ci_high"])
                 if d in part.index else "—" for d in ("goal", "relationship", "believability")]
        n = int(part["n"].max()) if len(part) else 0
        goal = part.loc["goal"] if "goal" in part.index else None
        means = "—" if goal is None else f"{goal['mean_judge']:.2f} vs {goal['mean_human']:.2f}"
        rows.append([judge, n, *cells, means])
    return md_table(["judge", "n sides", "goal r", "relationship r", "believability r",
                     "goal: judge vs humans"], rows)


def _gaps(h: HumanEvalTables) -> str:
    g = h.judge_gap
    rows = [[r.judge, RELEASED_LABELS.get(r.model, r.model), fmt_ci(r.gap, r.ci_low, r.ci_high), r.n]
            for r in g.itertuples()]
    return md_table(["judge", "model", "goal: judge − humans [95% CI]", "n tested sides"], rows)


def human_eval_section(h: HumanEvalTables) -> str:
    """The section's Markdown (tables from `human_eval_tables`)."""
    return "\n".join([
        "From the released ratings alone (154 SOTOPIA-hard episodes, two annotators each, one GPT-3.5 episode three; "
        "the tested model plays a GPT-3.5 partner): the tested side's score averaged over its annotators, "
        "then over episodes, as the paper did. Full table: `released_human_eval.csv`.",
        "",
        _means(h),
        "",
        "Agreement between the annotators, pooled over models (per model: `released_human_agreement.csv`):",
        "",
        _agreement(h),
        "",
        "Judges against the annotators on the released episodes they rated (all dimensions: "
        "`judge_vs_human.csv`):",
        "",
        _judges(h),
        "",
        _gaps(h),
        *([""] + [f"- {n}" for n in h.notes] if h.notes else []),
    ])


# --- the file -----------------------------------------------------------------------------------


def _sections(t: RunTables, figures: Sequence[str]) -> list[tuple[str, str]]:
    """(title, Markdown) of every section, in the file's order; notes and figures only when there are any."""
    sections = [
        ("Provenance", "\n".join(["```", *t.info.provenance, "```"])),
        ("Coverage", _coverage(t)),
        ("Goal and overall", _main(t)),
        ("Each trained model versus base (same combos and positions)", _paired(t)),
        *[(f"Seven dimensions: {TASK_SET_LABELS[ts]}", dimensions_section(t, ts))
          for ts in ("sotopia_all", "sotopia_hard")],
        ("Safety", safety_section(t)),
        ("MMLU accuracy per category", mmlu_section(t)),
        ("Rater agreement", agreement_section(t)),
        ("SOTOPIA-pi's released human evaluation", human_eval_section(t.human_eval)),
        ("Training", training_section(t)),
    ]
    if t.notes:
        sections.append(("Notes", "\n".join(f"- {n}" for n in t.notes)))
    if figures:
        sections.append(("Figures", "\n".join(f"- [{Path(f).stem}]({f})" for f in figures)))
    return sections


def summary_markdown(t: RunTables, figures: Sequence[str] = ()) -> str:
    """The whole file: title, the embedded-model caveat, the methods line, then every section."""
    out = [
        f"# SOTOPIA-pi reproduction: run `{t.info.run}`",
        "",
        *_caveat(t),
        f"Judge whose scores are reported: `{t.judge}`. Scores are means over evaluated agents (one per "
        f"episode) with 95% CIs ({CI_METHOD}); proportions use a {PROPORTION_CI}; paired differences use a "
        f"{P_METHOD}.",
        "",
    ]
    for title, body in _sections(t, figures):
        out += [f"## {title}", "", body, ""]
    return "\n".join(out)


def write_summary(tables: RunTables, path: Path, figures: Sequence[Path] = ()) -> Path:
    """Write summary.md (atomically); `figures` (e.g. draw_all's paths) adds links to the PNGs,
    relative to the summary's folder."""
    path = Path(path)
    links = [Path(os.path.relpath(f, path.parent)).as_posix() for f in figures if Path(f).suffix == ".png"]
    return atomic_write_text(path, summary_markdown(tables, links))
