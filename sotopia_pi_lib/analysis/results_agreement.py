"""Rater agreement for notebook 06: which ratings serve as the reference, and the three tables.

The reference is, in order of preference: human ratings imported from annotation CSVs; a second
judge (ratings by another judge label in the run); repeated judging (samples 1.. of the run's judge
against its sample 0). Each is labelled by `Raters(kind=...)`, so nothing but human ratings is ever
called human. With none of them the result says why, and the figures show a labelled gap.

Human ratings live in `results/<run>/annotations/`: the `packet_<id>.json` that `write_packet` wrote
and the annotators' filled CSVs under `annotations/returned/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .agreement import Raters, goal_gap, judge_reference_correlation, krippendorff_alpha
from .annotation import load_packet, read_annotations

RETURNED = "returned"
# Resamples for the Spearman intervals: each one ranks every item again, so 10,000 over a whole run's
# thousands of rated agents would take minutes; 2,000 keeps percentile bounds stable to ~0.01.
SPEARMAN_RESAMPLES = 2_000


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


def load_human_ratings(folder: Path) -> pd.DataFrame | None:
    """Filled annotation CSVs of `folder/returned/` checked against the one packet in `folder`; None
    when nothing has been returned."""
    returned = sorted((folder / RETURNED).glob("*.csv")) if (folder / RETURNED).is_dir() else []
    if not returned:
        return None
    packets = sorted(folder.glob("packet_*.json"))
    if len(packets) != 1:
        raise DataError(
            f"{folder}: {len(packets)} packet_*.json files; the returned CSVs in {RETURNED}/ "
            "must be checked against exactly one packet"
        )
    return read_annotations(returned, load_packet(packets[0]))


def judge_frame(scores: pd.DataFrame, judge: str) -> pd.DataFrame:
    """The agreement module's rating table for one judge: rater = judge#sample, agent = the evaluated
    position (the only agent whose model the figures split by)."""
    part = scores[(scores["judge"] == judge) & (scores["dimension"] != "overall")]
    return pd.DataFrame(
        {
            "rater": part["judge"] + "#" + part["sample"].astype(str),
            "episode_id": part["episode_id"],
            "agent": part["position"],
            "dimension": part["dimension"],
            "score": part["score"],
            "model": part["model"],
        }
    )


def _auto_reference(scores: pd.DataFrame, judge: str) -> tuple[pd.DataFrame, pd.DataFrame, Raters] | None:
    others = sorted(set(scores["judge"]) - {judge})
    mine = judge_frame(scores, judge)
    if others:
        ref = pd.concat([judge_frame(scores, o) for o in others], ignore_index=True)
        return mine, ref, Raters(kind="second_judge", label=", ".join(others))
    samples = sorted(scores.loc[scores["judge"] == judge, "sample"].unique())
    if len(samples) > 1:
        first = mine["rater"] == f"{judge}#{samples[0]}"
        label = f"{judge}, samples {', '.join(map(str, samples[1:]))} vs sample {samples[0]}"
        return mine[first], mine[~first], Raters(kind="repeat_judging", label=label)
    return None


def agreement_tables(
    scores: pd.DataFrame,
    judge: str | None,
    *,
    human: pd.DataFrame | None = None,
    human_label: str = "annotators",
) -> Agreement:
    """Alpha per dimension, judge-vs-reference correlation per dimension and the goal gap per model."""
    if judge is None or scores.empty:
        return Agreement(judge=judge, raters=None, note="no rated evaluation episodes")
    if human is not None:
        mine, ref, raters = judge_frame(scores, judge), human, Raters(kind="human", label=human_label)
    else:
        found = _auto_reference(scores, judge)
        if found is None:
            return Agreement(
                judge=judge,
                raters=None,
                note=(
                    "no reference ratings: import human ratings (annotations/returned/*.csv), rate with a "
                    "second judge, or judge with samples >= 2"
                ),
            )
        mine, ref, raters = found
    among_ref = raters.kind == "human" and ref["rater"].nunique() >= 2
    pool = ref if among_ref else pd.concat([mine, ref], ignore_index=True)
    among = f"among {raters.describe()}" if among_ref else f"judge {judge} and {raters.describe()}"
    cols = ["rater", "episode_id", "agent", "dimension", "score"]
    return Agreement(
        judge=judge,
        raters=raters,
        alpha_among=among,
        alpha=krippendorff_alpha(pool[cols], raters=raters),
        correlation=judge_reference_correlation(
            mine, ref, judge_label=judge, raters=raters, n_resamples=SPEARMAN_RESAMPLES
        ),
        gap=goal_gap(mine, ref, judge_label=judge, raters=raters),
    )
