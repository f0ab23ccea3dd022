"""Rater agreement and judge-versus-reference ratings (the paper's human-evaluation figures), and
which ratings serve as a run's reference (`agreement_tables`).

All functions take tidy rating tables, one row per rater, episode, agent position and dimension:
columns `rater, episode_id, agent, dimension, score` (+ `model`, the label of the model that played
that agent, where a per-model figure needs it). An item is one (episode_id, agent).

A run's reference is, in order of preference: human ratings imported from annotation CSVs
(`annotation.load_human_ratings`); a second judge (ratings by another judge label in the run);
repeated judging (samples 1.. of the run's judge against its sample 0). The reference raters are
always named by a `Raters` value that the output carries, so an analysis run between two judges or
between repeated judgings is labelled as such and never reads as human. With no reference the result
says why, and the figures show a labelled gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy import stats as sps

from ..errors import DataError
from ..judge.ratings import EpisodeRating, RatedEpisodes
from ..judge.rubric import DIMENSION_NAMES
from ..judge.rubric import DIMENSIONS as RUBRIC_DIMENSIONS
from .stats import CONFIDENCE, N_RESAMPLES, mean_ci

DIMENSION_RANGES: dict[str, tuple[int, int]] = {d.name: (d.low, d.high) for d in RUBRIC_DIMENSIONS}
DIMENSIONS: tuple[str, ...] = DIMENSION_NAMES
RATING_COLUMNS = ("rater", "episode_id", "agent", "dimension", "score")
ITEM = ["episode_id", "agent"]
# Resamples for the Spearman intervals: each one ranks every item again, so 10,000 over a whole run's
# thousands of rated agents would take minutes; 2,000 keeps percentile bounds stable to ~0.01.
SPEARMAN_RESAMPLES = 2_000
_KIND_TEXT = {"human": "human annotators", "second_judge": "a second judge", "repeat_judging": "repeated judging"}


class Raters(BaseModel):
    """Who produced a set of reference ratings; carried into every output row."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["human", "second_judge", "repeat_judging"]
    label: str

    def describe(self) -> str:
        return f"{_KIND_TEXT[self.kind]} ({self.label})"


def judge_rating_table(ratings: Iterable[EpisodeRating], model_of: Callable[[str, int], str]) -> pd.DataFrame:
    """A judge's ratings as a rating table. The rater is `judge#sample_index`, so repeated judgings of
    one episode are separate raters; `model` is `model_of(episode_id, agent)`, the model that played
    that agent; judge, sample_index and rubric_version ride along."""
    rows = [{"rater": f"{r.judge}#{r.sample_index}", "episode_id": r.episode_id, "agent": agent,
             "dimension": dim, "score": float(score), "model": model_of(r.episode_id, agent), "judge": r.judge,
             "sample_index": r.sample_index, "rubric_version": r.rubric_version}
            for r in ratings for agent, agent_rating in enumerate(r.agents) for dim, score in agent_rating.scores.items()]
    return pd.DataFrame(rows)


def judge_ratings_frame(rated: RatedEpisodes) -> pd.DataFrame:
    """Judge ratings joined with their episodes (`judge.join_ratings`) as a rating table
    (`judge_rating_table`, the model of each agent from its episode)."""
    models = {ep.episode_id: ep.models for ep, _ in rated.pairs}
    ratings = [r for _, rs in rated.pairs for r in rs]
    if not ratings:
        raise DataError(f"no judge ratings to tabulate ({rated.summary()})")
    return judge_rating_table(ratings, lambda episode_id, agent: models[episode_id][agent])


def check_ratings(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """Validate a tidy rating table; returns it with integer agent and float score."""
    absent = [c for c in RATING_COLUMNS if c not in df.columns]
    if absent:
        raise DataError(f"{what}: columns {absent} missing (a rating table needs {list(RATING_COLUMNS)})")
    if df.empty:
        raise DataError(f"{what}: no ratings (empty table)")
    unknown = sorted(set(df["dimension"]) - set(DIMENSIONS))
    if unknown:
        raise DataError(f"{what}: unknown dimensions {unknown}; expected {list(DIMENSIONS)}")
    agent = pd.to_numeric(df["agent"], errors="coerce")
    if not agent.isin([0, 1]).all():
        raise DataError(f"{what}: agent must be 0 or 1; got {sorted(map(str, set(df['agent'][~agent.isin([0, 1])])))}")
    out = df.assign(agent=agent.astype(int), score=pd.to_numeric(df["score"], errors="coerce"))
    if out["score"].isna().any():
        raise DataError(f"{what}: missing or non-numeric scores in rows {_rows(out[out['score'].isna()])}")
    lo = out["dimension"].map(lambda d: DIMENSION_RANGES[d][0])
    hi = out["dimension"].map(lambda d: DIMENSION_RANGES[d][1])
    bad = out[(out["score"] < lo) | (out["score"] > hi)]
    if not bad.empty:
        r = bad.iloc[0]
        raise DataError(f"{what}: score {r['score']} for {r['dimension']} is outside "
                        f"{list(DIMENSION_RANGES[r['dimension']])} (rows {_rows(bad)})")
    dup = out[out.duplicated(["rater", *ITEM, "dimension"], keep=False)]
    if not dup.empty:
        raise DataError(f"{what}: the same rater scored the same item twice (rows {_rows(dup)})")
    return out


def _rows(df: pd.DataFrame, limit: int = 5) -> str:
    keys = [f"{r.rater}/{r.episode_id}/agent {r.agent}/{r.dimension}" for r in df.head(limit).itertuples()]
    return ", ".join(keys) + (f" … ({len(df)} in all)" if len(df) > limit else "")


def interval_alpha(matrix: np.ndarray) -> float:
    """Krippendorff's alpha, interval metric, for a raters x items matrix with NaN for missing cells.

    alpha = 1 - D_o / D_e over pairable values (items rated at least twice): D_o is the mean squared
    difference within items (each item weighted 1/(m_u - 1)), D_e the mean squared difference over all
    pairs of pairable values (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability").
    Written out here (25 lines, checked against the paper's worked example) rather than depending on
    the GPL-licensed `krippendorff` package.
    """
    units = [col[~np.isnan(col)] for col in np.asarray(matrix, dtype=float).T]
    units = [u for u in units if len(u) >= 2]
    values = np.concatenate(units)
    n = len(values)
    d_o = sum(((u[:, None] - u[None, :]) ** 2).sum() / (len(u) - 1) for u in units) / n
    d_e = 2 * n * ((values - values.mean()) ** 2).sum() / (n * (n - 1))
    return float(1 - d_o / d_e)


def krippendorff_alpha(ratings: pd.DataFrame, *, raters: Raters) -> pd.DataFrame:
    """Interval-level alpha per dimension across raters; cells a rater left
    unrated are missing, items with a single rating add nothing. NaN alpha (with a note) where it is
    undefined: fewer than two raters on any item, or one value only."""
    df = check_ratings(ratings, f"ratings of {raters.describe()}")
    rows = []
    for dim in DIMENSIONS:
        part = df[df["dimension"] == dim]
        if part.empty:
            continue
        matrix = part.pivot(index="rater", columns=ITEM, values="score")
        pairable = int((matrix.notna().sum(axis=0) >= 2).sum())
        alpha, note = float("nan"), ""
        if pairable == 0:
            note = "no item rated by two raters"
        elif part["score"].nunique() < 2:
            note = "every rating has the same value"
        else:
            alpha = interval_alpha(matrix.to_numpy(dtype=float))
        rows.append({"dimension": dim, "alpha": alpha, "n_items": pairable, "n_raters": matrix.shape[0],
                     "n_ratings": int(matrix.notna().to_numpy().sum()), "note": note,
                     "raters_kind": raters.kind, "raters": raters.describe()})
    return pd.DataFrame(rows)


def item_means(ratings: pd.DataFrame, what: str) -> pd.DataFrame:
    """One score per item and dimension: the mean over raters (the paper averages annotators)."""
    df = check_ratings(ratings, what)
    return df.groupby([*ITEM, "dimension"], as_index=False)["score"].mean()


def _joined(judge: pd.DataFrame, reference: pd.DataFrame, judge_label: str, raters: Raters) -> pd.DataFrame:
    j = item_means(judge, f"ratings of judge {judge_label}")
    r = item_means(reference, f"ratings of {raters.describe()}")
    both = j.merge(r, on=[*ITEM, "dimension"], suffixes=("_judge", "_ref"))
    if both.empty:
        raise DataError(f"judge {judge_label} and {raters.describe()} rated no item in common "
                        "(matched on episode_id and agent)")
    return both


def _spearman_along(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along an axis (Pearson of average ranks), vectorized over resamples."""
    ra, rb = sps.rankdata(a, axis=axis), sps.rankdata(b, axis=axis)
    ra = ra - ra.mean(axis=axis, keepdims=True)
    rb = rb - rb.mean(axis=axis, keepdims=True)
    return (ra * rb).sum(axis=axis) / np.sqrt((ra**2).sum(axis=axis) * (rb**2).sum(axis=axis))


def _spearman_ci(x: np.ndarray, y: np.ndarray, seed: int, n_resamples: int) -> tuple[float, float]:
    """Percentile bootstrap over items, written out rather than scipy.stats.bootstrap because a
    resample whose scores are all equal has no rho: such resamples are left out instead of turning
    the whole interval into NaN (they are rare past ~10 items)."""
    if x.size < 4:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_resamples, x.size))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = _spearman_along(x[idx], y[idx], axis=1)
    rho = rho[~np.isnan(rho)]
    if rho.size < n_resamples / 2:
        return float("nan"), float("nan")
    alpha = (1 - CONFIDENCE) / 2
    return float(np.quantile(rho, alpha)), float(np.quantile(rho, 1 - alpha))


def pearson_interval(x: np.ndarray, y: np.ndarray) -> dict[str, float | str]:
    """Pearson's r with its Fisher-z interval and p-value (scipy); NaN with a note where undefined."""
    nan = float("nan")
    out: dict[str, float | str] = dict.fromkeys(["pearson_r", "pearson_ci_low", "pearson_ci_high", "pearson_p"], nan)
    if x.size < 3:
        return {**out, "note": "fewer than 3 items"}
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return {**out, "note": "constant scores: correlation undefined"}
    p = sps.pearsonr(x, y)
    ci = p.confidence_interval(confidence_level=CONFIDENCE)
    return {"pearson_r": float(p.statistic), "pearson_ci_low": float(ci.low), "pearson_ci_high": float(ci.high),
            "pearson_p": float(p.pvalue), "note": ""}


def _correlate(x: np.ndarray, y: np.ndarray, seed: int, n_resamples: int) -> dict[str, float | str]:
    pearson = pearson_interval(x, y)
    nan = float("nan")
    if pearson["note"]:
        return {**pearson, **dict.fromkeys(["spearman_rho", "spearman_ci_low", "spearman_ci_high", "spearman_p"],
                                           nan), "note": pearson["note"]}
    s = sps.spearmanr(x, y)
    s_low, s_high = _spearman_ci(x, y, seed, n_resamples)
    return {**pearson, "spearman_rho": float(s.statistic), "spearman_ci_low": s_low, "spearman_ci_high": s_high,
            "spearman_p": float(s.pvalue), "note": ""}


def judge_reference_correlation(
    judge: pd.DataFrame, reference: pd.DataFrame, *, judge_label: str, raters: Raters,
    seed: int = 0, n_resamples: int = N_RESAMPLES,
) -> pd.DataFrame:
    """Per dimension, Pearson (Fisher-z interval) and Spearman (percentile bootstrap interval over
    items) between the judge's score and the reference raters' mean score on the same items."""
    both = _joined(judge, reference, judge_label, raters)
    rows = []
    for dim in DIMENSIONS:
        part = both[both["dimension"] == dim]
        if part.empty:
            continue
        stats = _correlate(part["score_judge"].to_numpy(), part["score_ref"].to_numpy(), seed, n_resamples)
        rows.append({"dimension": dim, "n": len(part), **stats, "judge": judge_label,
                     "raters_kind": raters.kind, "raters": raters.describe()})
    return pd.DataFrame(rows)


def goal_gap(
    judge: pd.DataFrame, reference: pd.DataFrame, *, judge_label: str, raters: Raters,
    dimension: str = "goal", seed: int = 0, n_resamples: int = N_RESAMPLES,
) -> pd.DataFrame:
    """Per model, judge minus reference mean score on the same items, with a bootstrap interval over
    items (the paper's gap figure: 0.36 for the base model to 1.42 for BC+SR)."""
    if "model" not in judge.columns:
        raise DataError(f"judge {judge_label} ratings need a 'model' column to split the gap by model")
    models = judge[["episode_id", "agent", "model"]].drop_duplicates()
    models = models.assign(agent=models["agent"].astype(int))
    clash = models[models.duplicated(ITEM, keep=False)]
    if not clash.empty:
        raise DataError(f"judge {judge_label} ratings give two models for item(s) "
                        f"{clash[ITEM].drop_duplicates().head(5).to_dict('records')}")
    both = _joined(judge, reference, judge_label, raters)
    both = both[both["dimension"] == dimension].merge(models, on=ITEM)
    if both.empty:
        raise DataError(f"no item has a {dimension} score from both judge {judge_label} and {raters.describe()}")
    rows = []
    for model, part in both.groupby("model", sort=True):
        gap = part["score_judge"] - part["score_ref"]
        m = mean_ci(gap, seed=seed, n_resamples=n_resamples, what=f"{dimension} gap of {model}")
        rows.append({"model": model, "dimension": dimension, "judge_mean": float(part["score_judge"].mean()),
                     "reference_mean": float(part["score_ref"].mean()), "gap": m.mean, "ci_low": m.ci_low,
                     "ci_high": m.ci_high, "n": m.n, "judge": judge_label, "raters_kind": raters.kind,
                     "raters": raters.describe()})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Agreement:
    """Judge versus reference ratings; empty tables and a `note` saying why when there is no reference."""

    judge: str | None
    raters: Raters | None
    alpha_among: str = ""
    alpha: pd.DataFrame = field(default_factory=pd.DataFrame)
    correlation: pd.DataFrame = field(default_factory=pd.DataFrame)
    gap: pd.DataFrame = field(default_factory=pd.DataFrame)
    note: str = ""

    @property
    def available(self) -> bool:
        return self.raters is not None


def scores_as_ratings(scores: pd.DataFrame, judge: str) -> pd.DataFrame:
    """One judge's part of a run's score table (`load.load_eval`) as a rating table: rater =
    judge#sample, agent = the evaluated position (the only agent whose model the figures split by)."""
    part = scores[(scores["judge"] == judge) & (scores["dimension"] != "overall")]
    return pd.DataFrame({"rater": part["judge"] + "#" + part["sample"].astype(str), "episode_id": part["episode_id"],
                         "agent": part["position"], "dimension": part["dimension"], "score": part["score"],
                         "model": part["model"]})


def _auto_reference(scores: pd.DataFrame, judge: str) -> tuple[pd.DataFrame, pd.DataFrame, Raters] | None:
    others = sorted(set(scores["judge"]) - {judge})
    mine = scores_as_ratings(scores, judge)
    if others:
        ref = pd.concat([scores_as_ratings(scores, o) for o in others], ignore_index=True)
        return mine, ref, Raters(kind="second_judge", label=", ".join(others))
    samples = sorted(scores.loc[scores["judge"] == judge, "sample"].unique())
    if len(samples) > 1:
        first = mine["rater"] == f"{judge}#{samples[0]}"
        label = f"{judge}, samples {', '.join(map(str, samples[1:]))} vs sample {samples[0]}"
        return mine[first], mine[~first], Raters(kind="repeat_judging", label=label)
    return None


def agreement_tables(
    scores: pd.DataFrame, judge: str | None, *, human: pd.DataFrame | None = None, human_label: str = "annotators"
) -> Agreement:
    """Alpha per dimension, judge-vs-reference correlation per dimension and the goal gap per model."""
    if judge is None or scores.empty:
        return Agreement(judge=judge, raters=None, note="no rated evaluation episodes")
    if human is not None:
        mine, ref, raters = scores_as_ratings(scores, judge), human, Raters(kind="human", label=human_label)
    else:
        found = _auto_reference(scores, judge)
        if found is None:
            return Agreement(judge=judge, raters=None, note=(
                "no reference ratings: import human ratings (annotations/returned/*.csv), rate with a "
                "second judge, or judge with samples >= 2"))
        mine, ref, raters = found
    among_ref = raters.kind == "human" and ref["rater"].nunique() >= 2
    pool = ref if among_ref else pd.concat([mine, ref], ignore_index=True)
    among = f"among {raters.describe()}" if among_ref else f"judge {judge} and {raters.describe()}"
    return Agreement(
        judge=judge, raters=raters, alpha_among=among,
        alpha=krippendorff_alpha(pool[list(RATING_COLUMNS)], raters=raters),
        correlation=judge_reference_correlation(mine, ref, judge_label=judge, raters=raters,
                                                n_resamples=SPEARMAN_RESAMPLES),
        gap=goal_gap(mine, ref, judge_label=judge, raters=raters),
    )
