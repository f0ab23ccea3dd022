"""Stage 06: a run's results as tables, statistics, figures and summary.md; nothing here loads a model.

| module        | what it holds                                                                        |
|---------------|--------------------------------------------------------------------------------------|
| `load`        | a run's saved files as tidy tables: scores and coverage, MMLU, safety flags, loss     |
|               | curves, training-data scores, provenance                                             |
| `stats`       | the methods: bootstrap means, Wilson proportions, paired comparisons                 |
| `tables`      | `build_tables`: everything notebook 06 shows, and the statistic behind each table   |
| `agreement`   | rater agreement, judge versus reference raters, and the run's choice of reference   |
| `human_eval`  | SOTOPIA-pi's released human evaluation, and any judge against its annotators        |
| `reference`   | the paper's published numbers, and which of them stand beside this study's models   |
| `figures`     | one module per figure family, `style` (the look, and `save`), `draw_all`              |
| `report`      | summary.md and its sections                                                          |
| `annotation`  | human rating packets out, annotators' CSVs back in                                   |

Imports run one way: load, stats → agreement → annotation, reference → human_eval → tables →
figures → report.
"""

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
