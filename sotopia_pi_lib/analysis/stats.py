"""The statistical methods the study reports with: means with bootstrap confidence intervals,
proportions with Wilson intervals and paired model comparisons (on plain values; `tables` applies
them to a run's tables).

Every score the study reports comes with its 95% interval and its n, because the embedded model's
small runs (a few dozen episodes) have intervals as wide as the differences between models.

Methods, fixed so that reports can state them:
- confidence interval of a mean: percentile bootstrap (`scipy.stats.bootstrap`, method="percentile",
  10,000 resamples, seeded). Percentile rather than BCa because BCa is undefined for the constant
  samples that small runs produce (all goals 0), where percentile gives the honest [x, x].
- confidence interval of a proportion (MMLU accuracy, compliance rate): Wilson score interval, which
  stays honest at 0% or 100% on small n and costs nothing at MMLU's 14k questions (a bootstrap there
  needs 10,000 x 14,042 resamples).
- paired comparison: the interval is the percentile bootstrap of the mean per-item difference; the
  p-value is a two-sided paired permutation test (`scipy.stats.permutation_test`,
  permutation_type="samples": the sign of each item's difference is flipped at random; exact when
  2**n <= resamples).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy import stats as sps

from ..errors import DataError

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
CI_METHOD = "percentile bootstrap (scipy.stats.bootstrap, 10,000 resamples, seeded)"
P_METHOD = "two-sided paired permutation test (scipy.stats.permutation_test, sign flips)"
PROPORTION_CI = "Wilson score interval (scipy.stats.binomtest(...).proportion_ci, method='wilson')"


class MeanCI(BaseModel):
    """A mean with its confidence interval; the interval is NaN when n == 1."""

    model_config = ConfigDict(frozen=True)

    mean: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float = CONFIDENCE
    method: str = CI_METHOD


class PairedComparison(BaseModel):
    """Model A minus model B on the same items."""

    model_config = ConfigDict(frozen=True)

    model_a: str
    model_b: str
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    confidence: float = CONFIDENCE
    ci_method: str = CI_METHOD
    p_method: str = P_METHOD


def _as_finite(values: Sequence[float] | np.ndarray | pd.Series, what: str, dropna: bool) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError) as e:
        raise DataError(f"{what}: values are not numbers ({e})") from e
    missing = int(np.isnan(arr).sum())
    if missing and not dropna:
        raise DataError(f"{what}: {missing} of {arr.size} values are missing (NaN); rate them or pass dropna=True")
    arr = arr[~np.isnan(arr)]
    if np.isinf(arr).any():
        raise DataError(f"{what}: values include infinity")
    if arr.size == 0:
        raise DataError(f"{what}: no values to average (empty input)")
    return arr


def bootstrap_ci(
    arr: np.ndarray, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; (nan, nan) for a single value."""
    if arr.size < 2:
        return float("nan"), float("nan")
    res = sps.bootstrap(
        (arr,), np.mean, method="percentile", confidence_level=confidence,
        n_resamples=n_resamples, rng=np.random.default_rng(seed), vectorized=True,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_ci(
    values: Sequence[float] | np.ndarray | pd.Series,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    dropna: bool = False,
    what: str = "values",
) -> MeanCI:
    """Mean with its bootstrap interval; `what` names the data in error messages."""
    arr = _as_finite(values, what, dropna)
    low, high = bootstrap_ci(arr, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return MeanCI(mean=float(arr.mean()), ci_low=low, ci_high=high, n=int(arr.size), confidence=confidence)


def proportion(successes: int, n: int) -> tuple[float, float, float]:
    """Rate with its Wilson 95% interval; NaNs for n == 0."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    ci = sps.binomtest(successes, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return successes / n, float(ci.low), float(ci.high)


def grouped_mean_ci(
    df: pd.DataFrame,
    by: str | Sequence[str],
    value: str | Sequence[str],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    dropna: bool = False,
) -> pd.DataFrame:
    """Tidy table: the `by` columns, metric, mean, ci_low, ci_high, n — one row per group and metric."""
    by_cols = [by] if isinstance(by, str) else list(by)
    metrics = [value] if isinstance(value, str) else list(value)
    absent = [c for c in by_cols + metrics if c not in df.columns]
    if absent:
        raise DataError(f"grouped_mean_ci: columns {absent} not in the table (it has {list(df.columns)})")
    if df.empty:
        raise DataError(f"grouped_mean_ci: the table is empty (no rows to group by {by_cols})")
    rows = []
    for key, group in df.groupby(by_cols, sort=True, dropna=False):
        key_t = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{c}={k}" for c, k in zip(by_cols, key_t, strict=True))
        for metric in metrics:
            m = mean_ci(group[metric], confidence=confidence, n_resamples=n_resamples, seed=seed,
                        dropna=dropna, what=f"{metric} for {label}")
            rows.append({**dict(zip(by_cols, key_t, strict=True)), "metric": metric,
                         "mean": m.mean, "ci_low": m.ci_low, "ci_high": m.ci_high, "n": m.n})
    return pd.DataFrame(rows, columns=[*by_cols, "metric", "mean", "ci_low", "ci_high", "n"])


def _check_items(s: pd.Series, label: str) -> pd.Series:
    dup = s.index[s.index.duplicated()].unique()
    if len(dup):
        raise DataError(f"paired comparison: model {label!r} has duplicate item ids: {_preview(dup)}")
    if s.isna().any():
        raise DataError(f"paired comparison: model {label!r} has missing scores for items "
                        f"{_preview(s.index[s.isna()])}")
    return s.astype(float)


def _preview(ids: Sequence | pd.Index, limit: int = 10) -> str:
    ids = [str(i) for i in ids]
    more = f" … and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more + f" ({len(ids)} in all)"


def paired_compare(
    a: pd.Series,
    b: pd.Series,
    *,
    model_a: str,
    model_b: str,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """Compare two models on the same items: each Series maps an item id (e.g. combo and agent
    position) to that model's score. Items must match exactly; unmatched ids are listed."""
    a, b = _check_items(a, model_a), _check_items(b, model_b)
    only_a, only_b = a.index.difference(b.index), b.index.difference(a.index)
    if len(only_a) or len(only_b):
        parts = [f"only {m!r} has {_preview(ids)}" for m, ids in ((model_a, only_a), (model_b, only_b)) if len(ids)]
        raise DataError("paired comparison: the two models were not scored on the same items; " + "; ".join(parts))
    if a.empty:
        raise DataError(f"paired comparison of {model_a!r} and {model_b!r}: no items (empty input)")
    b = b.loc[a.index]
    diffs = a.to_numpy() - b.to_numpy()
    low, high = bootstrap_ci(diffs, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return PairedComparison(
        model_a=model_a, model_b=model_b, mean_a=float(a.mean()), mean_b=float(b.mean()),
        diff=float(diffs.mean()), ci_low=low, ci_high=high, p_value=_permutation_p(diffs, n_resamples, seed),
        n=int(diffs.size), confidence=confidence,
    )


def _permutation_p(diffs: np.ndarray, n_resamples: int, seed: int) -> float:
    if diffs.size < 2 or np.all(diffs == 0):
        return 1.0 if np.all(diffs == 0) else float("nan")
    res = sps.permutation_test(
        (diffs, np.zeros_like(diffs)), lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples", vectorized=True, n_resamples=n_resamples,
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue)


def paired_compare_frame(
    df: pd.DataFrame, *, model_col: str, item_col: str | Sequence[str], value: str,
    model_a: str, model_b: str, **kwargs,
) -> PairedComparison:
    """`paired_compare` on a tidy table with one row per model and item."""
    item_cols = [item_col] if isinstance(item_col, str) else list(item_col)
    absent = [c for c in [model_col, *item_cols, value] if c not in df.columns]
    if absent:
        raise DataError(f"paired comparison: columns {absent} not in the table (it has {list(df.columns)})")
    series = {}
    for m in (model_a, model_b):
        part = df[df[model_col] == m]
        if part.empty:
            known = sorted(map(str, df[model_col].unique()))
            raise DataError(f"paired comparison: no rows for model {m!r} (models present: {known})")
        series[m] = part.set_index(item_cols)[value]
    return paired_compare(series[model_a], series[model_b], model_a=model_a, model_b=model_b, **kwargs)
