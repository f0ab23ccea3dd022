"""The released human evaluation's statistics: the paper's human numbers reproduced exactly, agreement
between annotators checked against a direct computation, the gap figure from data, and a judge put
against the humans (released GPT-4 scores; made-up judge ratings with a known offset)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from sotopia_pi_lib.analysis.agreement import interval_alpha
from sotopia_pi_lib.analysis.human_eval import (
    HUMAN_CSV_COLUMNS,
    JUDGE_CSV_COLUMNS,
    METRICS,
    RELEASED_GPT4,
    human_eval_tables,
    judge_frame,
    judge_goal_gap,
    judge_vs_human,
    released_rating_table,
    write_human_eval_csvs,
)
from sotopia_pi_lib.analysis.reference import load_reference
from sotopia_pi_lib.data.human_eval import load_human_eval
from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.judge.ratings import AgentRating, DimensionRating, EpisodeRating

PAPER_HUMAN_GOAL = {"mistral-7b": 2.89, "sr": 3.32, "bc": 3.55, "bc+sr": 4.29, "gpt-4": 5.25}


@pytest.fixture(scope="module")
def release():
    return load_human_eval()


@pytest.fixture(scope="module")
def tables(release):
    return human_eval_tables(release, reference=load_reference())


def goal_row(means: pd.DataFrame, model: str) -> pd.Series:
    return means[(means["model"] == model) & (means["dimension"] == "goal")].iloc[0]


def test_goal_rows_equal_the_papers_human_numbers(tables):
    means = tables.means
    assert list(means.columns) == HUMAN_CSV_COLUMNS
    for model, published in PAPER_HUMAN_GOAL.items():
        row = goal_row(means, model)
        assert round(row["mean"], 2) == published and row["paper"] == published and row["n"] == 28
        assert row["ci_low"] < row["mean"] < row["ci_high"]
    gpt35 = goal_row(means, "gpt-3.5")
    assert gpt35["n"] == 28 and np.isnan(gpt35["paper"])  # self-play: both sides tested; no published value
    assert means[means["dimension"] != "goal"]["paper"].isna().all()
    assert set(means["dimension"]) == set(METRICS) and len(means) == 6 * 8


def test_episodes_are_averaged_over_annotators_first(release, tables):
    """The three-annotator GPT-3.5 episode weighs as one episode (4.08), not as 1.5 (4.05 per row)."""
    table = released_rating_table(release)
    rows = table[(table["model"] == "gpt-3.5") & table["tested"] & (table["dimension"] == "goal")]
    assert round(rows["score"].mean(), 2) == 4.05
    assert round(goal_row(tables.means, "gpt-3.5")["mean"], 2) == 4.08
    overall = tables.means[(tables.means["model"] == "bc") & (tables.means["dimension"] == "overall")].iloc[0]
    items = rows.groupby(["episode_id", "agent"]).size()
    assert len(items) == 28 and overall["n"] == 28


def test_agreement_matches_a_direct_computation(release, tables):
    table = released_rating_table(release)
    # 7 episodes hold a second rating by the same annotator: it is left out, so 147 episodes pair up
    assert (table["slot"] == -1).sum() == 7 * 2 * 7
    goal = table[(table["dimension"] == "goal") & (table["slot"] >= 0)]
    wide = goal.pivot_table(index=["episode_id", "agent"], columns="slot", values="score")
    row = tables.agreement.set_index(["model", "dimension"]).loc[("all", "goal")]
    pairs = wide[[0, 1]].dropna()
    assert row["pairs"] == len(pairs) == 294
    assert row["pearson"] == pytest.approx(sps.pearsonr(pairs[0], pairs[1]).statistic)
    assert row["alpha"] == pytest.approx(interval_alpha(wide.to_numpy().T))
    assert 0.6 < row["alpha"] < 0.8  # annotators agree on goal far more than on knowledge or secret
    assert set(tables.agreement["model"]) == {*PAPER_HUMAN_GOAL, "gpt-3.5", "all"}


def test_gap_figure_from_data(tables):
    fig = tables.gap_figure.set_index("model")
    for model, gap in {"mistral-7b": 0.36, "sr": 0.64, "bc": 1.27, "bc+sr": 1.42, "gpt-4": 0.64}.items():
        assert round(fig.loc[model, "gap"], 2) == gap == fig.loc[model, "gap_published"]
    # GPT-4's own released scores of the 28 GPT-4 episodes give the published GPT-4-rated goal
    assert round(fig.loc["gpt-4", "gpt4_goal_released"], 2) == 5.89 == fig.loc["gpt-4", "gpt4_goal_published"]
    assert fig.loc["gpt-4", "gpt4_n_released"] == 28 and np.isnan(fig.loc["gpt-3.5", "gpt4_goal_published"])


def test_released_gpt4_against_the_humans(release, tables):
    vs = tables.judge_vs_human
    assert list(vs.columns) == JUDGE_CSV_COLUMNS and set(vs["judge"]) == {RELEASED_GPT4}
    goal = vs[vs["dimension"] == "goal"].iloc[0]
    table = released_rating_table(release)
    human = table[(table["model"] == "gpt-4") & (table["dimension"] == "goal")].groupby(["episode_id", "agent"])["score"].mean()
    gpt4 = pd.Series({(pk, a): release.gpt4[pk].agents[a]["goal"] for pk, a in human.index})
    assert goal["n"] == 56 and goal["pearson"] == pytest.approx(sps.pearsonr(gpt4, human).statistic)
    assert goal["mean_judge"] == pytest.approx(gpt4.mean()) and goal["mean_human"] == pytest.approx(human.mean())
    gap = tables.judge_gap.set_index("model").loc["gpt-4"]
    assert round(gap["gap"], 2) == 0.64 and gap["n"] == 28


def rating(pk: str, goals: tuple[int, int], judge: str = "hf:test", version: str = "v1") -> EpisodeRating:
    def agent(goal: int) -> AgentRating:
        dims = {d: DimensionRating(reasoning="r", score=0) for d in
                ("believability", "relationship", "knowledge", "secret", "social_rules",
                 "financial_and_material_benefits")}
        return AgentRating.from_dimensions({**dims, "goal": DimensionRating(reasoning="r", score=goal)})
    return EpisodeRating(episode_id=pk, judge=judge, rubric_version=version, sample_index=0, temperature=0.0,
                         agents=(agent(goals[0]), agent(goals[1])))


def test_a_judge_two_points_above_the_humans(release):
    """A made-up judge that scores goal = round(human mean) + 2 on three BC episodes: the table and
    the per-model gap see exactly that."""
    table = released_rating_table(release)
    bc = sorted({r.pk for r in release.ratings if r.model == "bc"})[:3]
    goal = table[table["dimension"] == "goal"].groupby(["episode_id", "agent"])["score"].mean()
    judged = [rating(pk, (min(10, int(goal[(pk, 0)]) + 2), min(10, int(goal[(pk, 1)]) + 2))) for pk in bc]
    frames = judge_frame(judged, release)
    assert list(frames) == ["hf:test"]
    vs = judge_vs_human(frames["hf:test"], table, "hf:test").set_index("dimension")
    assert vs.loc["goal", "n"] == 6 and vs.loc["goal", "mean_judge"] > vs.loc["goal", "mean_human"]
    expected = np.mean([min(10, int(goal[(pk, a)]) + 2) - goal[(pk, a)] for pk in bc
                        for a in release.episodes[pk].tested_positions])
    gap = judge_goal_gap(frames["hf:test"], table, "hf:test").set_index("model").loc["bc"]
    assert gap["gap"] == pytest.approx(expected) and gap["n"] == 3


def test_judge_ratings_errors(release):
    with pytest.raises(DataError, match=r"not released human-evaluation episodes \(e\.g\. \['nope'\]\)"):
        judge_frame([rating("nope", (1, 1))], release)
    pk = release.ratings[0].pk
    with pytest.raises(DataError, match=r"rubric versions \['v1', 'v2'\]"):
        judge_frame([rating(pk, (1, 1)), rating(pk, (1, 1), version="v2")], release)


def test_csvs_have_the_issues_columns(tables, tmp_path):
    paths = write_human_eval_csvs(tables, tmp_path)
    assert [p.name for p in paths[:2]] == ["released_human_eval.csv", "judge_vs_human.csv"]
    assert list(pd.read_csv(paths[0]).columns) == HUMAN_CSV_COLUMNS
    assert list(pd.read_csv(paths[1]).columns) == JUDGE_CSV_COLUMNS
    back = pd.read_csv(paths[0])
    goal = back[back["dimension"] == "goal"].set_index("model")["mean"].round(2).to_dict()
    assert goal == {**PAPER_HUMAN_GOAL, "gpt-3.5": 4.08}
