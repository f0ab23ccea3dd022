"""summary.md's section on SOTOPIA-pi's released human evaluation: the human numbers beside the paper's,
how far the annotators agree, and every judge against them."""

from __future__ import annotations

import pandas as pd

from .figures.style import METRIC_LABELS
from .human_eval import RELEASED_MODELS, HumanEvalTables
from .summary_sections import fmt_ci, md_table

LABELS = {"mistral-7b": "base (Mistral-7B)", "sr": "SR", "bc": "BC", "bc+sr": "BC+SR", "gpt-4": "GPT-4",
          "gpt-3.5": "GPT-3.5 (self-play)"}


def _num(v: float, digits: int = 2) -> str:
    return "—" if pd.isna(v) else f"{v:.{digits}f}"


def _means(h: HumanEvalTables) -> str:
    m = h.means.set_index(["model", "dimension"])
    g = h.gap_figure.set_index("model")
    rows = []
    for model in [x for x in RELEASED_MODELS if (x, "goal") in m.index]:
        goal, overall = m.loc[(model, "goal")], m.loc[(model, "overall")]
        rows.append([LABELS[model], int(goal["n"]), fmt_ci(goal["mean"], goal["ci_low"], goal["ci_high"]),
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
    rows = [[r.judge, LABELS.get(r.model, r.model), fmt_ci(r.gap, r.ci_low, r.ci_high), r.n]
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
