"""summary.md carries the run's numbers with CIs and n, the provenance block, gaps and the caveats."""

from __future__ import annotations

import csv

import numpy as np
from test_analysis_load import build_synthetic_run

from sotopia_pi_lib.analysis.annotation import CSV_COLUMNS, build_packet, write_packet
from sotopia_pi_lib.analysis.report import write_summary
from sotopia_pi_lib.analysis.tables import build_tables
from sotopia_pi_lib.judge.rubric import DIMENSIONS
from sotopia_pi_lib.sim.episode import EpisodeRecord
from sotopia_pi_lib.store.jsonl import read_jsonl


def test_summary_has_the_numbers_gaps_and_provenance(tmp_path):
    s = build_synthetic_run(tmp_path / "run", models=("base", "sr", "bc"), n_combos=3)
    s.paths.mmlu("sr").unlink()
    tables = build_tables(s.paths, ("base", "sr", "bc", "bc_sr"))
    pngs = [tmp_path / "run" / "06_analysis" / "figures" / "goal_overall.png"]
    text = write_summary(tables, s.paths.summary, pngs).read_text()
    base_goal = np.mean(s.goals[("base", "sotopia_all")])
    row = next(line for line in text.splitlines() if line.startswith("| SOTOPIA (all) | base |"))
    assert f"| {base_goal:.2f} [" in row and row.endswith("| 6 |  |")
    assert "| SOTOPIA-hard | base |" in text and "| 3.25 |" in text  # the paper's published base goal on hard
    assert (
        "| BC+SR | no data (no episode file) | no data (no episode file) | no data (no episode file) |"
        in text
    )
    bc_mmlu = (
        tables.mmlu_stats[tables.mmlu_stats["model"] == "bc"].set_index("category").loc["all", "accuracy"]
    )
    assert f"{100 * bc_mmlu:.1f}% [" in text and "| SR | no data | no data |" in text
    # the released human evaluation, from the release alone: the paper's human goals and gaps
    section = text[text.index("## SOTOPIA-pi's released human evaluation"):]
    assert "| base (Mistral-7B) | 28 | 2.89 [" in section and "| 2.89 |" in section
    assert "| BC+SR | 28 | 4.29 [" in section and "| 5.71 | 1.42 | 1.42 |" in section
    assert "| gpt-4 (released SOTOPIA scores) | 56 | 0.79 [" in section
    comp = np.mean(s.complied["bc"])
    assert f"{100 * comp:.1f}% [" in text
    assert "git 0123456789" in text and "05_evaluate: done" in text
    assert "embedded SmolLM2-135M-Instruct" in text and "mean nothing about social intelligence" in text
    assert "No agreement analysis: no reference ratings" in text
    assert "](figures/goal_overall.png)" in text
    assert "| SOTOPIA (all) | goal | SR − base |" in text


def test_no_embedded_note_for_other_models(tmp_path):
    s = build_synthetic_run(
        tmp_path / "run",
        models=("base",),
        task_sets=("sotopia_all",),
        n_combos=2,
        mmlu_per_subject=0,
        embedded=False,
    )
    text = write_summary(build_tables(s.paths, ("base",)), tmp_path / "summary.md").read_text()
    assert "mean nothing about social intelligence" not in text and "No MMLU results" in text


def _fill(template, out, annotator, shift):
    with template.open() as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows):
        r["annotator"] = annotator
        for d in DIMENSIONS:
            r[d.name] = str(min(max(d.low, d.low + (i + shift) % (d.high - d.low + 1)), d.high))
            r[f"{d.name}_reasoning"] = f"{annotator}'s reason"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def test_human_ratings_are_imported_and_labelled_human(tmp_path, sotopia):
    s = build_synthetic_run(
        tmp_path / "run", models=("base", "bc"), task_sets=("sotopia_hard",), n_combos=4, mmlu_per_subject=0
    )
    episodes = [
        e for m in ("base", "bc") for e in read_jsonl(s.paths.eval_episodes(m, "sotopia_hard"), EpisodeRecord)
    ]
    folder = s.paths.root / "annotations"
    # the synthetic characters a1, a2 stand for two real ones: annotators see full backgrounds
    people = dict(zip(("a1", "a2"), list(sotopia.agents.values())[:2], strict=True))
    files = write_packet(build_packet(episodes, n=10, seed=1, agents=people), folder)
    _fill(files.csv, folder / "returned" / "ann1.csv", "ann1", 0)
    _fill(files.csv, folder / "returned" / "ann2.csv", "ann2", 1)
    tables = build_tables(s.paths, ("base", "bc"))
    a = tables.agreement
    assert a.raters.kind == "human" and a.alpha_among.startswith("among human annotators")
    assert a.gap["n"].sum() == 10  # ten packet episodes, one evaluated agent each
    text = write_summary(tables, tmp_path / "summary.md").read_text()
    assert "Reference raters: **human annotators (annotators)** (human)." in text
