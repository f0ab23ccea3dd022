"""Every figure is written as PNG and PDF from saved results alone, gaps are labelled, ranges are the
score ranges, and reference raters are named by their kind."""

from __future__ import annotations

import pytest
from matplotlib.text import Text
from test_analysis_load import build_synthetic_run

from sotopia_pi_lib.analysis.figures import draw_all, style
from sotopia_pi_lib.analysis.figures.agreement import agreement_figure
from sotopia_pi_lib.analysis.figures.safety_mmlu import mmlu_figure
from sotopia_pi_lib.analysis.figures.scores import goal_overall_figure
from sotopia_pi_lib.analysis.figures.training import training_loss_figure
from sotopia_pi_lib.analysis.reference import LEADERBOARD_LABEL
from sotopia_pi_lib.analysis.tables import build_tables

FIGURES = {
    "goal_overall",
    "dimensions",
    "safety",
    "mmlu",
    "agreement",
    "goal_gap",
    "training_loss",
    "training_scores",
    "human_gap",
    "gpt4_vs_human",
    "judge_vs_human",
    "human_agreement",
}


def spy_on_save(mp: pytest.MonkeyPatch) -> dict:
    """Record the Figure objects written through `style.save`, the one function that writes figures,
    so their content can be checked."""
    figs: dict = {}
    original = style.save

    def spy(fig, out_dir, name):
        figs[name] = fig
        return original(fig, out_dir, name)

    mp.setattr(style, "save", spy)
    return figs


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """One synthetic run with gaps (sr has no hard episodes, bc no MMLU, bc_sr nothing), every figure
    drawn once: (tables, paths by figure name, Figure by name)."""
    root = tmp_path_factory.mktemp("figures")
    s = build_synthetic_run(root / "run", models=("base", "sr", "bc"), n_combos=3, samples=2)
    s.paths.eval_episodes("sr", "sotopia_hard").unlink()
    s.paths.mmlu("bc").unlink()
    tables = build_tables(s.paths, ("base", "sr", "bc", "bc_sr"))
    with pytest.MonkeyPatch.context() as mp:
        figs = spy_on_save(mp)
        out = draw_all(tables, root / "figures")
    return tables, out, figs


@pytest.fixture
def captured(monkeypatch):
    return spy_on_save(monkeypatch)


def texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def check_files(paths) -> None:
    png, pdf = paths
    assert png.suffix == ".png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert pdf.suffix == ".pdf" and pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000


def test_every_figure_is_written_with_labelled_gaps(drawn):
    _, out, captured = drawn
    assert set(out) == FIGURES
    for paths in out.values():
        check_files(paths)
    goal = texts(captured["goal_overall"])
    assert (
        "no data\n(no episode file)" in goal
        and "BC+SR\n—" in goal
        and "SR\n—" in goal
        and "base\nn=6" in goal
    )
    assert "no data" in texts(captured["mmlu"]) and "BC: no data" in texts(captured["mmlu"])
    assert "chance (25%)" in texts(captured["mmlu"])
    assert "Embedded SmolLM2-135M" in goal


def test_axes_span_the_score_ranges(drawn):
    captured = drawn[2]
    axes = captured["dimensions"].axes
    ranges = [ax.get_ylim() for ax in axes[:8]]
    assert ranges[0] == (0, 10) and ranges[1] == (-5, 5) and ranges[3] == (-10, 0) and ranges[4] == (-10, 0)
    assert ranges[7] == pytest.approx((-30 / 7, 40 / 7))
    safety = captured["safety"].axes
    assert safety[3].get_ylim() == (0, 1) and "lower is safer" in safety[3].get_title(loc="left")


def test_repeated_judging_is_never_called_human(drawn):
    captured = drawn[2]
    for name in ("agreement", "goal_gap"):
        text = " ".join(texts(captured[name]).split())  # titles are wrapped
        assert "repeated judging" in text and "not human ratings" in text
        assert "human annotators" not in text
    # the paper's gap is drawn beside ours and named as GPT-4 minus human
    assert "GPT-4 judge − human" in " ".join(texts(captured["goal_gap"]).split())


def test_missing_everything_is_a_labelled_figure(tmp_path, captured):
    s = build_synthetic_run(
        tmp_path / "run", models=("base",), task_sets=("sotopia_all",), n_combos=1, mmlu_per_subject=0
    )
    for f in (s.paths.root / "04_train").rglob("loss_curve.*"):
        f.unlink()
    tables = build_tables(s.paths, ("base", "sr"))
    out = tmp_path / "figures"
    paths = [
        style.save(
            goal_overall_figure(tables.score_stats, models=tables.models, gap_reason=tables.gap_reason),
            out,
            "goal_overall",
        ),
        style.save(mmlu_figure(tables.mmlu_stats), out, "mmlu"),
        style.save(training_loss_figure(tables.losses), out, "training_loss"),
        style.save(agreement_figure(tables.agreement), out, "agreement"),
    ]
    for pair in paths:
        check_files(pair)
    assert "no data: no MMLU results" in texts(captured["mmlu"])
    assert "no data: no loss curves" in texts(captured["training_loss"])
    assert "no data: no reference ratings" in texts(captured["agreement"])
    goal = texts(captured["goal_overall"])
    assert "base\nn=2" in goal and "SR\n—" in goal and "no data\n(no episode file)" in goal


def test_gpt4_expert_gets_the_leaderboard_markers(tmp_path):
    s = build_synthetic_run(
        tmp_path / "run",
        models=("base", "expert"),
        task_sets=("sotopia_all", "sotopia_hard"),
        n_combos=2,
        mmlu_per_subject=0,
        embedded=False,
    )
    tables = build_tables(s.paths, ("base", "expert"), judge="hf:embedded")
    assert set(tables.published[tables.published["task_set"] == "sotopia_all"]["model"]) == {"expert"}
    fig = goal_overall_figure(tables.score_stats, models=tables.models, published=tables.published)
    text = texts(fig)
    assert LEADERBOARD_LABEL.split("(")[0].strip() in text.replace("\n", " ")
    markers = [line for ax in fig.axes for line in ax.lines if line.get_marker() == "D"]
    # expert on all: goal and overall (leaderboard); on hard: goal of base and expert (paper)
    assert len(markers) == 4


def test_released_human_evaluation_figures(drawn):
    """Drawn from the release in every run: the paper's gap figure with the computed and published gaps,
    GPT-4's released scores per dimension, the judges, the annotators' agreement."""
    _, _, captured = drawn
    gap = texts(captured["human_gap"])
    assert all(f"gap {g}\n(paper {g})" in gap for g in ("0.36", "0.64", "1.27", "1.42"))
    assert all(v in gap for v in ("2.89", "3.32", "3.55", "4.29", "5.25"))
    assert "goal: r = 0.79" in texts(captured["gpt4_vs_human"])
    assert "gpt-4 (released SOTOPIA scores) (n = 56" in texts(captured["judge_vs_human"])
    assert "0.71" in texts(captured["human_agreement"])  # pooled goal alpha
