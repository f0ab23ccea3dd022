"""SOTOPIA-pi's released human evaluation: the paper's human numbers, agreement between annotators,
the GPT-4-versus-human gap figure, and any judge against the annotators on the released episodes.

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

A judge's ratings become a rating table (one row per rater, episode, agent side and dimension, with the
released model and whether the side is the tested one); against the annotators' mean on the same sides
it gives, per dimension, Pearson's r (Fisher-z 95% CI) and Spearman's rho, the two means, and per model
the judge-minus-human goal gap on the tested sides — the paper's finding (GPT-4 rates goals higher than
humans do, by 0.36 for the base model up to 1.42 for BC+SR) as a test any judge can be put to. GPT-4's
own released scores of the 28 GPT-4 episodes are one such judge, available in every run.
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
from ..data.sources import HUMAN_EVAL_CSVS
from ..errors import DataError
from ..judge.ratings import EpisodeRating
from ..paths import shared_data_dir
from ..store.files import atomic_write_text
from ..store.run import RunPaths
from .agreement import (
    DIMENSIONS,
    SPEARMAN_RESAMPLES,
    Raters,
    goal_gap,
    item_means,
    judge_rating_table,
    judge_reference_correlation,
    krippendorff_alpha,
    pearson_interval,
)
from .load import METRICS, read_ratings
from .reference import SOTOPIA_PI_REFERENCE, HardGoalBlock, SotopiaPiReference, load_reference
from .stats import mean_ci

RELEASED_MODELS: tuple[str, ...] = tuple(HUMAN_EVAL_CSVS)  # mistral-7b, sr, bc, bc+sr, gpt-4, gpt-3.5
RELEASED_GPT4 = "gpt-4 (released SOTOPIA scores)"
ANNOTATORS = Raters(kind="human", label="SOTOPIA-pi annotators")
HUMAN_CSV_COLUMNS = ["model", "dimension", "n", "mean", "ci_low", "ci_high", "paper"]
JUDGE_CSV_COLUMNS = ["judge", "dimension", "n", "pearson", "pearson_ci_low", "pearson_ci_high", "spearman",
                     "mean_judge", "mean_human"]
ALL = "all"


# --- the release alone --------------------------------------------------------------------------


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


def released_gpt4_frame(ev: ReleasedHumanEval) -> pd.DataFrame:
    """GPT-4's released scores of the released episodes it rated, as a judge rating table."""
    rows = [{"rater": RELEASED_GPT4, "episode_id": pk, "agent": agent, "dimension": dim, "score": score,
             "model": ev.model_of(pk), "tested": agent in ev.episodes[pk].tested_positions}
            for pk, scores in ev.gpt4.items() if pk in ev.views
            for agent, side in enumerate(scores.agents) for dim, score in side.items()]
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


# --- any judge against the annotators -----------------------------------------------------------


def judge_frame(ratings: Sequence[EpisodeRating], ev: ReleasedHumanEval) -> dict[str, pd.DataFrame]:
    """The study's judge ratings of released episodes as rating tables, one per judge label; a rating
    of an episode outside the release, or one judge under two rubric versions, is an error."""
    unknown = sorted({r.episode_id for r in ratings} - set(ev.views))
    if unknown:
        raise DataError(f"ratings of {len(unknown)} episodes that are not released human-evaluation "
                        f"episodes (e.g. {unknown[:3]}); files from another source mixed in?")
    out = {}
    for judge in sorted({r.judge for r in ratings}):
        mine = [r for r in ratings if r.judge == judge]
        versions = sorted({r.rubric_version for r in mine})
        if len(versions) > 1:
            raise DataError(f"judge {judge} rated the released episodes under rubric versions {versions}; "
                            "their scores are not comparable: delete the older ratings or re-judge")
        table = judge_rating_table(mine, lambda episode_id, _: ev.model_of(episode_id))
        out[judge] = table.assign(tested=[a in ev.episodes[e].tested_positions
                                          for e, a in zip(table["episode_id"], table["agent"], strict=True)])
    return out


def judge_vs_human(judge: pd.DataFrame, humans: pd.DataFrame, label: str) -> pd.DataFrame:
    """judge_vs_human.csv rows of one judge: per dimension over every agent side both rated, Pearson
    (Fisher-z CI) and Spearman between the judge's score (mean over samples) and the annotators' mean."""
    human = humans.assign(rater=humans["source"])  # one rater per released row: repeats stay apart
    corr = judge_reference_correlation(judge, human, judge_label=label, raters=ANNOTATORS,
                                       n_resamples=SPEARMAN_RESAMPLES).set_index("dimension")
    both = item_means(judge, f"ratings of {label}").merge(item_means(human, "released ratings"),
                                                          on=["episode_id", "agent", "dimension"],
                                                          suffixes=("_judge", "_human"))
    means = both.groupby("dimension")[["score_judge", "score_human"]].mean()
    return pd.DataFrame([
        {"judge": label, "dimension": dim, "n": int(corr.loc[dim, "n"]), "pearson": corr.loc[dim, "pearson_r"],
         "pearson_ci_low": corr.loc[dim, "pearson_ci_low"], "pearson_ci_high": corr.loc[dim, "pearson_ci_high"],
         "spearman": corr.loc[dim, "spearman_rho"], "mean_judge": means.loc[dim, "score_judge"],
         "mean_human": means.loc[dim, "score_human"]}
        for dim in DIMENSIONS if dim in corr.index], columns=JUDGE_CSV_COLUMNS)


def judge_goal_gap(judge: pd.DataFrame, humans: pd.DataFrame, label: str, *, seed: int = 0) -> pd.DataFrame:
    """Per model, the judge's goal minus the annotators' on the tested sides both rated (95% CI) — the
    paper's finding, that this gap grows from the base model to BC+SR, put to any judge."""
    human = humans[humans["tested"]].assign(rater=lambda d: d["source"])
    gap = goal_gap(judge[judge["tested"]], human, judge_label=label, raters=ANNOTATORS, seed=seed)
    order = {m: i for i, m in enumerate(RELEASED_MODELS)}
    return gap.sort_values("model", key=lambda s: s.map(order)).reset_index(drop=True)


# --- every table, for a run ---------------------------------------------------------------------


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


RELEASED_CSVS = ("released_human_eval", "judge_vs_human", "released_human_agreement", "judge_goal_gap")


def write_human_eval_csvs(tables: HumanEvalTables, out_dir: Path) -> list[Path]:
    """`released_human_eval.csv` (HUMAN_CSV_COLUMNS) and `judge_vs_human.csv` (JUDGE_CSV_COLUMNS), plus the annotator
    agreement and the per-model judge gaps as `released_human_agreement.csv`, `judge_goal_gap.csv` (RELEASED_CSVS)."""
    frames = (tables.means, tables.judge_vs_human, tables.agreement, tables.judge_gap)
    return [atomic_write_text(Path(out_dir) / f"{name}.csv", df.to_csv(index=False))
            for name, df in zip(RELEASED_CSVS, frames, strict=True)]
