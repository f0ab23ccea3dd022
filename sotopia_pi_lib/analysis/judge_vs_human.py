"""Any judge against SOTOPIA-pi's released human ratings, on the released episodes.

A judge's ratings become a rating table (one row per rater, episode, agent side and dimension, with the
released model and whether the side is the tested one); against the annotators' mean on the same sides
it gives, per dimension, Pearson's r (Fisher-z 95% CI) and Spearman's rho, the two means, and per model
the judge-minus-human goal gap on the tested sides — the paper's finding (GPT-4 rates goals higher than
humans do, by 0.36 for the base model up to 1.42 for BC+SR) as a test any judge can be put to. GPT-4's
own released scores of the 28 GPT-4 episodes are one such judge, available in every run.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..data.human_eval import ReleasedHumanEval
from ..data.sources import HUMAN_EVAL_CSVS
from ..errors import DataError
from ..judge.ratings import EpisodeRating
from .agreement import (
    DIMENSIONS,
    SPEARMAN_RESAMPLES,
    Raters,
    goal_gap,
    item_means,
    judge_rating_table,
    judge_reference_correlation,
)

RELEASED_MODELS: tuple[str, ...] = tuple(HUMAN_EVAL_CSVS)  # mistral-7b, sr, bc, bc+sr, gpt-4, gpt-3.5
JUDGE_CSV_COLUMNS = ["judge", "dimension", "n", "pearson", "pearson_ci_low", "pearson_ci_high", "spearman",
                     "mean_judge", "mean_human"]
RELEASED_GPT4 = "gpt-4 (released SOTOPIA scores)"
ANNOTATORS = Raters(kind="human", label="SOTOPIA-pi annotators")


def released_gpt4_frame(ev: ReleasedHumanEval) -> pd.DataFrame:
    """GPT-4's released scores of the released episodes it rated, as a judge rating table."""
    rows = [{"rater": RELEASED_GPT4, "episode_id": pk, "agent": agent, "dimension": dim, "score": score,
             "model": ev.model_of(pk), "tested": agent in ev.episodes[pk].tested_positions}
            for pk, scores in ev.gpt4.items() if pk in ev.views
            for agent, side in enumerate(scores.agents) for dim, score in side.items()]
    return pd.DataFrame(rows)


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
