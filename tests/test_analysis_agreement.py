"""Rater agreement, judge-vs-reference correlation and the goal gap, on data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from sotopia_pi_lib.analysis.agreement import (
    DIMENSIONS,
    Raters,
    check_ratings,
    goal_gap,
    judge_ratings_frame,
    judge_reference_correlation,
    krippendorff_alpha,
)
from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.judge.ratings import (
    AgentRating,
    DimensionRating,
    EpisodeRating,
    RatedEpisodes,
    join_ratings,
)
from sotopia_pi_lib.judge.rubric import DIMENSIONS as RUBRIC_DIMENSIONS
from sotopia_pi_lib.sim.episode import EpisodeRecord

HUMANS = Raters(kind="human", label="pilot study")
SECOND_JUDGE = Raters(kind="second_judge", label="gpt-4o")

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the interval example with
# missing values: 3 coders x 15 units. Published interval alpha: 0.811 (the krippendorff package's
# doctest gives 0.810845).
K2011 = [
    [None, None, None, None, None, 3, 4, 1, 2, 1, 1, 3, 3, None, 3],
    [1, None, 2, 1, 3, 3, 4, 3, None, None, None, None, None, None, None],
    [None, None, 2, 1, 3, 4, 4, None, 2, 1, 1, 3, 3, None, 4],
]


def tidy(matrix, dimension="goal", raters=("A", "B", "C")) -> pd.DataFrame:
    return pd.DataFrame([{"rater": raters[i], "episode_id": f"ep{j}", "agent": j % 2, "dimension": dimension,
                          "score": v} for i, row in enumerate(matrix) for j, v in enumerate(row) if v is not None])


def test_alpha_reproduces_krippendorffs_published_example_with_missing_cells():
    out = krippendorff_alpha(tidy(K2011), raters=HUMANS)
    row = out.iloc[0]
    assert row["dimension"] == "goal" and row["alpha"] == pytest.approx(0.810845, abs=1e-6)
    assert row["n_raters"] == 3 and row["n_items"] == 12 and row["n_ratings"] == 27
    assert row["raters"] == "human annotators (pilot study)"


def test_alpha_per_dimension_perfect_and_undefined():
    perfect = tidy([[1, 2, 3, 4], [1, 2, 3, 4]], "believability", raters=("A", "B"))
    constant = tidy([[0, 0, 0], [0, 0, 0]], "secret", raters=("A", "B"))
    lonely = tidy([[1, 2, None], [None, None, 3]], "goal", raters=("A", "B"))
    out = krippendorff_alpha(pd.concat([perfect, constant, lonely]), raters=SECOND_JUDGE).set_index("dimension")
    assert out.loc["believability", "alpha"] == pytest.approx(1.0)
    assert math.isnan(out.loc["secret", "alpha"]) and "same value" in out.loc["secret", "note"]
    assert math.isnan(out.loc["goal", "alpha"]) and "no item rated by two" in out.loc["goal", "note"]
    assert list(out.index) == ["believability", "secret", "goal"]  # SOTOPIA's order, absent ones left out
    assert set(out["raters_kind"]) == {"second_judge"}


def test_check_ratings_rejects_bad_tables():
    good = tidy([[1, 2]], raters=("A",))
    with pytest.raises(DataError, match=r"score 11 for goal is outside \[0, 10\]"):
        check_ratings(good.assign(score=[1, 11]), "human ratings")
    with pytest.raises(DataError, match="unknown dimensions \\['charm'\\]"):
        check_ratings(good.assign(dimension="charm"), "human ratings")
    with pytest.raises(DataError, match="scored the same item twice.*A/ep0/agent 0/goal"):
        check_ratings(pd.concat([good, good.iloc[:1]]), "human ratings")
    with pytest.raises(DataError, match=r"columns \['rater'\] missing"):
        check_ratings(good.drop(columns="rater"), "human ratings")
    with pytest.raises(DataError, match="agent must be 0 or 1"):
        check_ratings(good.assign(agent=[0, 2]), "human ratings")


def paired_sets(n: int = 80, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """A judge and two annotators whose goal scores follow the judge's minus a model-dependent gap."""
    rng = np.random.default_rng(seed)
    judge_goal = rng.integers(3, 10, n).astype(float)
    model = np.where(np.arange(n) % 2 == 0, "base", "bc+sr")
    gap = np.where(model == "base", 0.5, 1.5)
    judge, human = [], []
    for k in range(n):
        item = {"episode_id": f"ep{k // 2}", "agent": k % 2, "dimension": "goal"}
        judge.append({**item, "rater": "judge", "score": judge_goal[k], "model": model[k]})
        for h, noise in (("h1", -1.0), ("h2", 1.0)):
            human.append({**item, "rater": h, "score": judge_goal[k] - gap[k] + noise * (k % 3 == 0)})
    return pd.DataFrame(judge), pd.DataFrame(human), judge_goal, judge_goal - gap


def test_correlation_matches_scipy_and_fisher_z():
    judge, human, x, y = paired_sets()
    out = judge_reference_correlation(judge, human, judge_label="gpt-4", raters=HUMANS, n_resamples=2000).iloc[0]
    r = sps.pearsonr(x, y).statistic
    assert out["n"] == 80 and out["pearson_r"] == pytest.approx(r)
    z, se = np.arctanh(r), 1 / np.sqrt(80 - 3)
    assert out["pearson_ci_low"] == pytest.approx(np.tanh(z - 1.959964 * se), abs=1e-5)
    assert out["pearson_ci_high"] == pytest.approx(np.tanh(z + 1.959964 * se), abs=1e-5)
    assert out["spearman_rho"] == pytest.approx(sps.spearmanr(x, y).statistic)
    assert out["spearman_ci_low"] < out["spearman_rho"] < out["spearman_ci_high"] <= 1
    assert out["raters"] == "human annotators (pilot study)" and out["judge"] == "gpt-4"


def test_correlation_with_unrelated_scores_has_an_interval_around_zero():
    judge, human, _, _ = paired_sets()
    shuffled = human.assign(score=np.random.default_rng(1).permutation(human["score"].to_numpy()))
    out = judge_reference_correlation(judge, shuffled, judge_label="j", raters=HUMANS, n_resamples=2000).iloc[0]
    assert out["pearson_ci_low"] < 0 < out["pearson_ci_high"]
    assert out["spearman_ci_low"] < 0 < out["spearman_ci_high"]


def test_correlation_undefined_cases_are_labelled_not_crashing():
    judge, human, _, _ = paired_sets(n=6)
    flat = judge_reference_correlation(judge.assign(score=5.0), human, judge_label="j", raters=HUMANS).iloc[0]
    assert math.isnan(flat["pearson_r"]) and "constant" in flat["note"]
    few = judge_reference_correlation(judge.head(2), human, judge_label="j", raters=HUMANS).iloc[0]
    assert few["n"] == 2 and "fewer than 3" in few["note"]


def test_goal_gap_per_model_recovers_the_gap():
    judge, human, _, _ = paired_sets()
    out = goal_gap(judge, human, judge_label="gpt-4", raters=HUMANS, n_resamples=2000).set_index("model")
    # the annotators' noise is symmetric (+1/-1) and averages out, so the gap is exact
    assert out.loc["base", "gap"] == pytest.approx(0.5) and out.loc["bc+sr", "gap"] == pytest.approx(1.5)
    assert out.loc["base", "n"] == 40
    assert out.loc["base", "judge_mean"] - out.loc["base", "reference_mean"] == pytest.approx(0.5)


def test_second_judge_mode_is_labelled_and_never_human():
    judge, human, _, _ = paired_sets()
    second = human.assign(rater=human["rater"].map({"h1": "run1", "h2": "run2"}))
    rep = Raters(kind="repeat_judging", label="gpt-4 at temperature 1, 2 runs")
    for out in (goal_gap(judge, second, judge_label="gpt-4", raters=rep, n_resamples=500),
                judge_reference_correlation(judge, second, judge_label="gpt-4", raters=rep, n_resamples=500),
                krippendorff_alpha(second, raters=rep)):
        assert set(out["raters_kind"]) == {"repeat_judging"}
        assert not any("human" in s for s in out["raters"])
        assert not any("human" in c for c in out.columns)


def test_goal_gap_errors():
    judge, human, _, _ = paired_sets()
    with pytest.raises(DataError, match="need a 'model' column"):
        goal_gap(judge.drop(columns="model"), human, judge_label="j", raters=HUMANS)
    with pytest.raises(DataError, match="rated no item in common"):
        goal_gap(judge, human.assign(episode_id="other" + human["episode_id"]), judge_label="j", raters=HUMANS)
    clash = pd.concat([judge, judge.head(1).assign(model="sr", dimension="knowledge")])
    with pytest.raises(DataError, match="two models"):
        goal_gap(clash, human, judge_label="j", raters=HUMANS)


def test_all_seven_dimensions_are_reported():
    rng = np.random.default_rng(2)
    rows = [{"rater": r, "episode_id": f"e{i}", "agent": 0, "dimension": d, "score": float(v)}
            for r in ("A", "B") for i in range(12) for d in DIMENSIONS
            for v in [rng.integers(0, 6) - (5 if d in ("secret", "social_rules") else 0)]]
    assert list(krippendorff_alpha(pd.DataFrame(rows), raters=HUMANS)["dimension"]) == list(DIMENSIONS)


def rated_episodes(n_episodes: int = 12, samples: int = 3) -> RatedEpisodes:
    """Episodes rated by one judge several times (sample_index 0..samples-1), as judge.rate stores them."""
    rng = np.random.default_rng(5)
    episodes, ratings = [], []
    for k in range(n_episodes):
        ep = EpisodeRecord(episode_id=f"ep{k}", env_id="env", scenario="s", agent_ids=("a", "b"),
                           agent_names=("A", "B"), goals=("g1", "g2"), models=("bc", "partner"),
                           prompt_version="v", seed=k, turns=[], end_reason="stale")
        episodes.append(ep)
        base = {d.name: int(rng.integers(d.low, d.high + 1)) for d in RUBRIC_DIMENSIONS}
        for s in range(samples):
            def agent(shift: int, base=base) -> AgentRating:
                return AgentRating.from_dimensions({
                    d.name: DimensionRating(reasoning="r", score=int(np.clip(base[d.name] + shift, d.low, d.high)))
                    for d in RUBRIC_DIMENSIONS})
            ratings.append(EpisodeRating(episode_id=ep.episode_id, judge="smollm", rubric_version="x",
                                         sample_index=s, temperature=1.0,
                                         agents=(agent(s % 2), agent(-(s % 2)))))
    return join_ratings(episodes, ratings)


def test_repeated_judging_from_stored_ratings():
    table = judge_ratings_frame(rated_episodes())
    assert len(table) == 12 * 3 * 2 * 7
    assert set(table["rater"]) == {"smollm#0", "smollm#1", "smollm#2"}
    assert set(table[table.agent == 1]["model"]) == {"partner"}
    first, repeats = table[table.sample_index == 0], table[table.sample_index > 0]
    rep = Raters(kind="repeat_judging", label="smollm, samples 1-2")
    gap = goal_gap(first, repeats, judge_label="smollm#0", raters=rep, n_resamples=500).set_index("model")
    # sample 1 shifts agent 0 by +1 and agent 1 by -1, sample 2 by 0: a gap of about -0.5 / +0.5
    # (clipping at the range ends pulls it toward 0)
    assert -0.5 <= gap.loc["bc", "gap"] < 0 < gap.loc["partner", "gap"] <= 0.5
    alpha = krippendorff_alpha(table, raters=rep).set_index("dimension")
    assert (alpha["alpha"] > 0.5).all() and (alpha["n_raters"] == 3).all()
    with pytest.raises(DataError, match="no judge ratings"):
        judge_ratings_frame(RatedEpisodes())
