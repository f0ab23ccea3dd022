"""The study's figures, drawn from tidy tables only (no model, no run folder access), one module per
family; `draw_all(tables, out_dir)` draws and writes every figure of a `RunTables`.

| figure files                                                  | module        |
|---------------------------------------------------------------|---------------|
| goal_overall, dimensions                                      | `scores`      |
| safety, mmlu                                                  | `safety_mmlu` |
| training_loss, training_scores                                | `training`    |
| agreement, goal_gap                                           | `agreement`   |
| human_gap, gpt4_vs_human, judge_vs_human, human_agreement     | `human_eval`  |

Each `<name>_figure` function takes the tables it draws and returns a Figure; `style.save` writes it
as `<name>.png` (150 dpi) and `<name>.pdf`. A model or table without data is drawn as a labelled gap;
published numbers are hollow diamonds with their source in the legend.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib.figure import Figure

from ..tables import RunTables
from .agreement import agreement_figure, goal_gap_figure
from .human_eval import human_eval_figures
from .safety_mmlu import mmlu_figure, mmlu_method, safety_figure
from .scores import dimensions_figure, goal_overall_figure
from .style import save_all
from .training import training_loss_figure, training_scores_figure

__all__ = ["draw_all", "study_figures"]


def _embedded_note(tables: RunTables) -> list[str]:
    roles = tables.info.embedded_roles
    if not roles:
        return []
    return [f"Embedded SmolLM2-135M model in roles {', '.join(roles)}: these scores test the pipeline and "
            "mean nothing about social intelligence."]


def study_figures(t: RunTables) -> dict[str, Figure]:
    """Every figure of the run's own results (not the released human evaluation), by file name."""
    notes = _embedded_note(t)
    # t.notes say which published values are drawn and why: only for figures that draw them
    scores = {"models": t.models, "judge": t.judge, "notes": notes + t.notes, "published": t.published,
              "gap_reason": t.gap_reason}
    return {
        "goal_overall": goal_overall_figure(t.score_stats, **scores),
        "dimensions": dimensions_figure(t.score_stats, **scores),
        "safety": safety_figure(t.safety_stats, models=t.models, gap_reason=t.gap_reason, judge=t.judge,
                                notes=notes),
        "mmlu": mmlu_figure(t.mmlu_stats, models=t.models, method=mmlu_method(t.mmlu), notes=notes),
        "agreement": agreement_figure(t.agreement, notes=notes),
        "goal_gap": goal_gap_figure(t.agreement, published_gap=t.published_gap, models=t.models,
                                    notes=notes + t.notes),
        "training_loss": training_loss_figure(t.losses, notes=notes),
        "training_scores": training_scores_figure(t.training, notes=notes),
    }


def draw_all(tables: RunTables, out_dir: Path) -> Mapping[str, list[Path]]:
    """Every figure of the study from a RunTables, written to out_dir; returns name -> [png, pdf]."""
    return save_all({**study_figures(tables), **human_eval_figures(tables.human_eval)}, out_dir)
