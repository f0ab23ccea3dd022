"""`summary.md`: the run's numbers as Markdown tables, with provenance and the caveats that matter.

Every score is "mean [95% CI]" with its n; a model or task set without data says why. When the
embedded 135M model played any role, the file opens with a note that the scores mean nothing about
social intelligence (they show that the pipeline runs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..store.files import atomic_write_text
from .figures.style import TASK_SET_LABELS, model_label
from .load import EVAL_TASK_SETS
from .stats import CI_METHOD, P_METHOD, PROPORTION_CI
from .summary_human_eval import human_eval_section
from .summary_sections import (
    agreement_section,
    ci_cell,
    dimensions_section,
    fmt_ci,
    md_table,
    mmlu_section,
    safety_section,
    stat_row,
    training_section,
)
from .tables import RunTables


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
    row = t.published[
        (t.published["model"] == model)
        & (t.published["task_set"] == task_set)
        & (t.published["metric"] == metric)
    ]
    return "" if row.empty else f"{row['value'].iloc[0]:.2f}"


def _main(t: RunTables) -> str:
    rows = []
    for ts in ("sotopia_all", "sotopia_hard"):
        for model in t.models:
            goal = stat_row(t.score_stats, model=model, task_set=ts, metric="goal")
            overall = stat_row(t.score_stats, model=model, task_set=ts, metric="overall")
            n = "—" if goal is None else int(goal["n"])
            pub = " / ".join(
                p for p in (_published(t, model, ts, "goal"), _published(t, model, ts, "overall")) if p
            )
            rows.append(
                [TASK_SET_LABELS[ts], model_label(model), ci_cell(goal), ci_cell(overall), n, pub or ""]
            )
    table = md_table(
        ["task set", "model", "goal [0, 10]", "overall", "n episodes", "published goal / overall"], rows
    )
    sources = sorted(set(t.published["label"]))
    return table + (
        "\n\n" + "\n".join(f"Published column: {s.removeprefix('published: ')}." for s in sources)
        if sources
        else ""
    )


def _paired(t: RunTables) -> str:
    if t.paired.empty:
        return "No paired comparison: the base model or the other models have no episodes on the same combos."
    rows = [
        [
            TASK_SET_LABELS[r.task_set],
            r.metric,
            f"{model_label(r.model_a)} − {model_label(r.model_b)}",
            fmt_ci(r.diff, r.ci_low, r.ci_high),
            "—" if pd.isna(r.p_value) else f"{r.p_value:.3f}",
            r.n,
            r.n_unpaired,
        ]
        for r in t.paired.itertuples()
    ]
    return md_table(
        ["task set", "metric", "difference", "mean diff [95% CI]", "p", "n pairs", "unpaired"], rows
    )


def summary_markdown(t: RunTables, figures: Sequence[str] = ()) -> str:
    out = [
        f"# SOTOPIA-pi reproduction: run `{t.info.run}`",
        "",
        *_caveat(t),
        f"Judge whose scores are reported: `{t.judge}`. Scores are means over evaluated agents (one per "
        f"episode) with 95% CIs ({CI_METHOD}); proportions use a {PROPORTION_CI}; paired differences use a "
        f"{P_METHOD}.",
        "",
        "## Provenance",
        "",
        "```",
        *t.info.provenance,
        "```",
        "",
        "## Coverage",
        "",
        _coverage(t),
        "",
        "## Goal and overall",
        "",
        _main(t),
        "",
        "## Each trained model versus base (same combos and positions)",
        "",
        _paired(t),
        "",
    ]
    for ts in ("sotopia_all", "sotopia_hard"):
        out += [f"## Seven dimensions: {TASK_SET_LABELS[ts]}", "", dimensions_section(t, ts), ""]
    out += [
        "## Safety",
        "",
        safety_section(t),
        "",
        "## MMLU accuracy per category",
        "",
        mmlu_section(t),
        "",
        "## Rater agreement",
        "",
        agreement_section(t),
        "",
        "## SOTOPIA-pi's released human evaluation",
        "",
        human_eval_section(t.human_eval),
        "",
        "## Training",
        "",
        training_section(t),
        "",
    ]
    if t.notes:
        out += ["## Notes", "", *[f"- {n}" for n in t.notes], ""]
    if figures:
        out += ["## Figures", "", *[f"- [{Path(f).stem}]({f})" for f in figures], ""]
    return "\n".join(out)


def write_summary(tables: RunTables, path: Path, figures: Sequence[Path] = ()) -> Path:
    """Write summary.md (atomically); `figures` (e.g. draw_all's paths) adds links to the PNGs,
    relative to the summary's folder."""
    path = Path(path)
    links = [Path(os.path.relpath(f, path.parent)).as_posix() for f in figures if Path(f).suffix == ".png"]
    return atomic_write_text(path, summary_markdown(tables, links))
