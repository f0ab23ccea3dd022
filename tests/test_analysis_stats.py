"""Bootstrap means and paired comparisons: known answers, coverage, and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sotopia_pi_lib.analysis.stats import grouped_mean_ci, mean_ci, paired_compare, paired_compare_frame
from sotopia_pi_lib.errors import DataError


def test_mean_ci_brackets_the_mean_and_is_seeded():
    m = mean_ci([1, 2, 3, 4, 5])
    assert m.mean == 3.0 and m.n == 5
    assert 1 <= m.ci_low < 3 < m.ci_high <= 5
    assert mean_ci([1, 2, 3, 4, 5], seed=0) == m
    assert "percentile bootstrap" in m.method


def test_mean_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(200):
        m = mean_ci(rng.normal(5.0, 2.0, 40), n_resamples=2000, seed=int(rng.integers(1 << 30)))
        hits += m.ci_low <= 5.0 <= m.ci_high
    assert 0.88 <= hits / 200 <= 0.99


def test_mean_ci_edge_cases():
    assert mean_ci([4, 4, 4]).model_dump(include={"ci_low", "ci_high"}) == {"ci_low": 4.0, "ci_high": 4.0}
    one = mean_ci([7])
    assert one.n == 1 and np.isnan(one.ci_low) and np.isnan(one.ci_high)
    with pytest.raises(DataError, match="goal scores: no values"):
        mean_ci([], what="goal scores")
    with pytest.raises(DataError, match="1 of 3 values are missing"):
        mean_ci([1, float("nan"), 3])
    assert mean_ci([1, float("nan"), 3], dropna=True).n == 2


def test_grouped_mean_ci_is_tidy_and_matches_per_group_means():
    df = pd.DataFrame({"model": ["a"] * 4 + ["b"] * 3, "task_set": ["all"] * 7,
                       "goal": [1, 2, 3, 4, 8, 9, 10], "secret": [0, 0, -1, 0, -2, 0, 0]})
    out = grouped_mean_ci(df, ["model", "task_set"], ["goal", "secret"])
    assert list(out.columns) == ["model", "task_set", "metric", "mean", "ci_low", "ci_high", "n"]
    goal_b = out[(out.model == "b") & (out.metric == "goal")].iloc[0]
    assert goal_b["mean"] == 9.0 and goal_b["n"] == 3
    assert goal_b["ci_low"] == mean_ci([8, 9, 10]).ci_low
    assert len(out) == 4


def test_grouped_mean_ci_errors_name_the_problem():
    df = pd.DataFrame({"model": ["a", "b"], "goal": [1.0, float("nan")]})
    with pytest.raises(DataError, match="goal for model=b"):
        grouped_mean_ci(df, "model", "goal")
    with pytest.raises(DataError, match=r"columns \['overall'\] not in the table"):
        grouped_mean_ci(df, "model", "overall")
    with pytest.raises(DataError, match="empty"):
        grouped_mean_ci(df.iloc[:0], "model", "goal")


def test_paired_compare_exact_permutation_p_value():
    a = pd.Series([3.0, 5.0, 7.0], index=["x", "y", "z"])
    b = pd.Series([4.0, 2.0, 3.0], index=["z", "x", "y"])  # order differs: matched by id; diffs 1, 2, 3
    r = paired_compare(a, b, model_a="bc", model_b="base")
    assert r.diff == pytest.approx(2.0) and r.n == 3
    # 2**3 sign patterns, only all-plus and all-minus reach |mean| = 2: p = 2/8
    assert r.p_value == pytest.approx(0.25)


def test_paired_compare_detects_a_real_shift_and_not_a_null_one():
    rng = np.random.default_rng(3)
    ids = [f"combo{i}/agent{i % 2}" for i in range(60)]
    base = rng.integers(0, 11, 60).astype(float)
    better = pd.Series(np.clip(base + rng.normal(1.5, 1.0, 60), 0, 10), index=ids)
    r = paired_compare(better, pd.Series(base, index=ids), model_a="bc", model_b="base")
    assert r.ci_low > 0 and r.p_value < 0.01
    same = paired_compare(pd.Series(base, index=ids), pd.Series(base, index=ids), model_a="a", model_b="b")
    assert same.diff == 0 and same.p_value == 1.0


def test_paired_compare_lists_unmatched_and_duplicate_ids():
    a = pd.Series([1.0, 2.0, 3.0], index=["c1", "c2", "c3"])
    b = pd.Series([1.0, 2.0, 4.0], index=["c1", "c2", "c9"])
    with pytest.raises(DataError, match=r"only 'sr' has c3 \(1 in all\); only 'base' has c9"):
        paired_compare(a, b, model_a="sr", model_b="base")
    with pytest.raises(DataError, match="duplicate item ids: c1"):
        paired_compare(pd.Series([1.0, 2.0], index=["c1", "c1"]), b, model_a="sr", model_b="base")
    with pytest.raises(DataError, match="empty"):
        paired_compare(a.iloc[:0], b.iloc[:0], model_a="sr", model_b="base")


def test_paired_compare_frame():
    df = pd.DataFrame({"model": ["bc"] * 3 + ["base"] * 3, "combo": ["c1", "c2", "c3"] * 2,
                       "agent": [0, 1, 0] * 2, "goal": [5, 6, 7, 3, 4, 5]})
    r = paired_compare_frame(df, model_col="model", item_col=["combo", "agent"], value="goal",
                             model_a="bc", model_b="base")
    assert r.diff == 2.0 and r.mean_a == 6.0 and r.n == 3
    with pytest.raises(DataError, match=r"no rows for model 'sr' \(models present: \['base', 'bc'\]\)"):
        paired_compare_frame(df, model_col="model", item_col="combo", value="goal", model_a="sr", model_b="bc")
