"""SOTOPIA-pi's released human evaluation: the paper's human numbers, agreement between annotators,
and the GPT-4-versus-human gap figure, from the release alone; with `judge_vs_human`, any judge.

How the paper averaged (SOTOPIA-pi's human_eval/official_test_analysis.py: `get_human_score`, then
`average_score`): each episode's scores are first averaged over its annotators, then the tested
model's side of every episode is averaged over episodes (both sides for GPT-3.5 self-play, whose
tested model is on both). An item is one (episode, agent side). Averaging per annotator row instead
gives the same five published means (every episode of those files has exactly two rows) but not for
GPT-3.5, whose one three-annotator episode would weigh 1.5 times.

Agreement between annotators counts one rating per annotator and episode: where the release holds two
ratings of an episode by the same annotator (seven episodes; two of them byte-identical rows), the
second is left out, since it is not a second annotator. Krippendorff's alpha (interval) uses every
remaining rating of an item; Pearson's r pairs the first two annotators of an item in file order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.human_eval import ReleasedHumanEval, load_human_eval, release_files
from ..errors import DataError
from ..judge.ratings import EpisodeRating
from ..paths import shared_data_dir
from ..store.files import atomic_write_text
from ..store.run import RunPaths
from .agreement import DIMENSIONS, krippendorff_alpha, pearson_interval
from .judge_vs_human import (
    ANNOTATORS,
    RELEASED_GPT4,
    RELEASED_MODELS,
    judge_frame,
    judge_goal_gap,
    judge_vs_human,
    released_gpt4_frame,
)
from .load import read_ratings
from .reference import SOTOPIA_PI_REFERENCE, HardGoalBlock, SotopiaPiReference, load_reference
from .stats import mean_ci

METRICS: tuple[str, ...] = (*DIMENSIONS, "overall")
HUMAN_CSV_COLUMNS = ["model", "dimension", "n", "mean", "ci_low", "ci_high", "paper"]
ALL = "all"


def released_rating_table(ev: ReleasedHumanEval) -> pd.DataFrame:
    """The released ratings as the project's rating table (`annotation.RATING_COLUMNS`, as returned
    packets import), plus `model` (the released label), `tested` (the tested model's side) and
    `slot` (the annotator's rank on that episode in file order; repeated annotators get no slot)."""
    rows, slots = [], {}
    for r in ev.ratings:
        key = (r.pk, r.annotator)
        repeat = key in slots
        if not repeat:
            slots[key] = sum(1 for k in slots if k[0] == r.pk)
        tested = ev.episodes[r.pk].tested_positions
        for agent, scores in enumerate(r.agents):
            rows += [{"rater": r.annotator, "episode_id": r.pk, "agent": agent, "dimension": dim,
                      "score": float(s.score), "reasoning": s.reasoning, "source": r.where, "model": r.model,
                      "tested": agent in tested, "slot": -1 if repeat else slots[key]}
                     for dim, s in scores.items()]
    return pd.DataFrame(rows)


def tested_item_means(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model, tested item and metric: the mean over the item's annotators (7 dimensions
    and `overall`, the mean of the seven)."""
    part = table[table["tested"]]
    means = part.groupby(["model", "episode_id", "agent", "dimension"], as_index=False)["score"].mean()
    overall = means.groupby(["model", "episode_id", "agent"], as_index=False)["score"].mean()
    return pd.concat([means, overall.assign(dimension="overall")], ignore_index=True)


def human_means(items: pd.DataFrame, reference: HardGoalBlock | None, *, seed: int = 0) -> pd.DataFrame:
    """released_human_eval.csv: per model and metric, n tested items, mean with its 95% bootstrap CI,
    and the paper's published human value where there is one (goal of the five paper models)."""
    published = reference.human_rated_goal if reference is not None else {}
    rows = []
    for model in [m for m in RELEASED_MODELS if m in set(items["model"])]:
        for metric in METRICS:
            values = items[(items["model"] == model) & (items["dimension"] == metric)]["score"]
            m = mean_ci(values, seed=seed, what=f"human {metric} of {model}")
            paper = published.get(model) if metric == "goal" else None
            rows.append({"model": model, "dimension": metric, "n": m.n, "mean": m.mean, "ci_low": m.ci_low,
                         "ci_high": m.ci_high, "paper": np.nan if paper is None else paper})
    return pd.DataFrame(rows, columns=HUMAN_CSV_COLUMNS)


def _first_two(wide: pd.DataFrame, dim: str) -> pd.DataFrame:
    """Items of one dimension rated by at least two annotators: columns 0 and 1, the first two
    annotators in file order (`wide`: items x (dimension, slot))."""
    if (dim, 0) not in wide.columns or (dim, 1) not in wide.columns:
        return pd.DataFrame(columns=[0, 1])
    return wide[dim][[0, 1]].dropna()


def annotator_agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and pooled (`model` = "all"), per dimension, over both agent sides: Krippendorff's alpha
    (interval) over every annotator of an item, and Pearson's r (Fisher-z 95% CI) between the first two."""
    kept = table[table["slot"] >= 0].assign(rater=lambda d: "slot" + d["slot"].astype(str))
    rows = []
    for model in [*[m for m in RELEASED_MODELS if m in set(kept["model"])], ALL]:
        part = kept if model == ALL else kept[kept["model"] == model]
        alpha = krippendorff_alpha(part, raters=ANNOTATORS).set_index("dimension")
        wide = part.pivot_table(index=["episode_id", "agent"], columns=["dimension", "slot"], values="score")
        for dim in DIMENSIONS:
            pairs = _first_two(wide, dim)
            r = pearson_interval(pairs[0].to_numpy(float), pairs[1].to_numpy(float))
            rows.append({"model": model, "dimension": dim, "alpha": alpha.loc[dim, "alpha"],
                         "alpha_items": int(alpha.loc[dim, "n_items"]), "pearson": r["pearson_r"],
                         "pearson_ci_low": r["pearson_ci_low"], "pearson_ci_high": r["pearson_ci_high"],
                         "pairs": len(pairs), "note": alpha.loc[dim, "note"] or r["note"]})
    return pd.DataFrame(rows)


def gap_figure_table(means: pd.DataFrame, ev: ReleasedHumanEval, reference: HardGoalBlock | None) -> pd.DataFrame:
    """The paper's gap figure from data: per paper model, GPT-4's published goal, the human goal
    computed here (with CI), their difference and the published gap; for GPT-4, also its goal from
    the released GPT-4 scores of the same episodes."""
    goal = means[means["dimension"] == "goal"].set_index("model")
    gpt4 = released_gpt4_frame(ev)
    gpt4 = gpt4[gpt4["tested"] & (gpt4["dimension"] == "goal")]
    rows = []
    for model in RELEASED_MODELS:
        if model not in goal.index:
            continue
        published = reference.gpt4_rated_goal.get(model) if reference is not None else None
        released = gpt4[gpt4["model"] == model]["score"]
        rows.append({"model": model, "human_goal": goal.loc[model, "mean"], "human_ci_low": goal.loc[model, "ci_low"],
                     "human_ci_high": goal.loc[model, "ci_high"], "n": int(goal.loc[model, "n"]),
                     "gpt4_goal_published": np.nan if published is None else published,
                     "gpt4_goal_released": released.mean() if len(released) else np.nan,
                     "gpt4_n_released": len(released),
                     "gap_published": (reference.gpt4_minus_human_goal_gap.get(model, np.nan)
                                       if reference is not None else np.nan)})
    out = pd.DataFrame(rows)
    return out.assign(gap=out["gpt4_goal_published"] - out["human_goal"])


@dataclass
class HumanEvalTables:
    """Everything 06 reports on the released human evaluation (see `human_eval_tables`)."""

    ratings: pd.DataFrame  # the released ratings, tidy (released_rating_table)
    means: pd.DataFrame  # released_human_eval.csv
    agreement: pd.DataFrame  # between annotators, per model and pooled
    gap_figure: pd.DataFrame  # the paper's gap figure, from data
    judge_vs_human: pd.DataFrame  # judge_vs_human.csv: GPT-4's released scores, then the study's judges
    judge_gap: pd.DataFrame  # per judge and model: goal gap on the tested sides
    judge_items: dict[str, pd.DataFrame] = field(default_factory=dict)  # judge -> its rating table
    notes: list[str] = field(default_factory=list)

    @property
    def judges(self) -> list[str]:
        return list(dict.fromkeys(self.judge_vs_human["judge"]))


def release_tables(ev: ReleasedHumanEval, reference: SotopiaPiReference | None = None, *,
                   seed: int = 0) -> HumanEvalTables:
    """Every table that needs the release alone (GPT-4's released scores are its only judge)."""
    block = reference.hard_goal_vs_gpt35_partner if reference is not None else None
    notes = [] if block is not None else ["the paper's reference figures are unavailable: `paper` is empty"]
    table = released_rating_table(ev)
    means = human_means(tested_item_means(table), block, seed=seed)
    gpt4 = released_gpt4_frame(ev)
    return HumanEvalTables(
        ratings=table, means=means, agreement=annotator_agreement(table),
        gap_figure=gap_figure_table(means, ev, block), judge_vs_human=judge_vs_human(gpt4, table, RELEASED_GPT4),
        judge_gap=judge_goal_gap(gpt4, table, RELEASED_GPT4, seed=seed), judge_items={RELEASED_GPT4: gpt4},
        notes=notes)


def with_judges(base: HumanEvalTables, ev: ReleasedHumanEval, judge_ratings: Sequence[EpisodeRating], *,
                seed: int = 0) -> HumanEvalTables:
    """`base` plus the study's judges against the humans on the released episodes they rated."""
    frames = judge_frame(judge_ratings, ev)
    vs = [base.judge_vs_human, *(judge_vs_human(f, base.ratings, label) for label, f in frames.items())]
    gaps = [base.judge_gap, *(judge_goal_gap(f, base.ratings, label, seed=seed) for label, f in frames.items())]
    note = [] if frames else ["the study's judge has not rated the released episodes (notebook 05 does)"]
    return dataclasses.replace(
        base, judge_vs_human=pd.concat(vs, ignore_index=True), judge_gap=pd.concat(gaps, ignore_index=True),
        judge_items=base.judge_items | frames, notes=[*base.notes, *note])


def human_eval_tables(
    ev: ReleasedHumanEval,
    judge_ratings: Sequence[EpisodeRating] = (),
    reference: SotopiaPiReference | None = None,
    *,
    seed: int = 0,
) -> HumanEvalTables:
    """Every table of the released human evaluation from the release alone, plus the study's judge
    against the humans on the released episodes it rated (`judge_ratings`, from notebook 05)."""
    return with_judges(release_tables(ev, reference, seed=seed), ev, judge_ratings, seed=seed)


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat() if path.is_file() else None
    return (str(path), st.st_mtime_ns if st else 0, st.st_size if st else -1)


@lru_cache(maxsize=2)
def _cached_release(stamps: tuple[tuple[str, int, int], ...], seed: int) -> tuple[ReleasedHumanEval, HumanEvalTables]:
    """The release-only tables, computed once per process for the same files (a few seconds): `make
    figures` and the tests build the run tables many times over the same release."""
    del stamps  # the key: the files' paths, sizes and modification times
    try:
        reference = load_reference()
    except DataError:
        reference = None
    ev = load_human_eval()
    return ev, release_tables(ev, reference, seed=seed)


def load_run_human_eval(paths: RunPaths, *, rubric_version: str | None = None, seed: int = 0) -> HumanEvalTables:
    """The released human evaluation for a run: the release's tables and the run's judge against them
    (its ratings of released episodes from 05; with `rubric_version`, other versions are ignored)."""
    files = release_files()  # verified (and if needed fetched) before they key the cache
    stamps = tuple(_stamp(p) for p in (*files.values(), shared_data_dir() / SOTOPIA_PI_REFERENCE))
    ev, base = _cached_release(stamps, seed)
    return with_judges(base, ev, read_ratings(paths.released_ratings, rubric_version), seed=seed)


def write_human_eval_csvs(tables: HumanEvalTables, out_dir: Path) -> list[Path]:
    """`released_human_eval.csv` and `judge_vs_human.csv` (the issue's columns), plus the annotator
    agreement and the per-model judge gaps as `released_human_agreement.csv`, `judge_goal_gap.csv`."""
    out = []
    for name, df in (("released_human_eval", tables.means), ("judge_vs_human", tables.judge_vs_human),
                     ("released_human_agreement", tables.agreement), ("judge_goal_gap", tables.judge_gap)):
        out.append(atomic_write_text(Path(out_dir) / f"{name}.csv", df.to_csv(index=False)))
    return out
