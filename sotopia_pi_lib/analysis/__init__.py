"""Statistics, rater agreement, human-rating packets and the paper's reference numbers (stage 06)."""

from .agreement import Raters, goal_gap, judge_ratings_frame, judge_reference_correlation, krippendorff_alpha
from .annotation import Packet, build_packet, load_packet, read_annotations, write_packet
from .reference import load_leaderboard, load_reference, reference_goal_gap
from .stats import MeanCI, PairedComparison, grouped_mean_ci, mean_ci, paired_compare, paired_compare_frame

__all__ = [
    "MeanCI",
    "Packet",
    "PairedComparison",
    "Raters",
    "build_packet",
    "goal_gap",
    "grouped_mean_ci",
    "judge_ratings_frame",
    "judge_reference_correlation",
    "krippendorff_alpha",
    "load_leaderboard",
    "load_packet",
    "load_reference",
    "mean_ci",
    "paired_compare",
    "paired_compare_frame",
    "read_annotations",
    "reference_goal_gap",
    "write_packet",
]
