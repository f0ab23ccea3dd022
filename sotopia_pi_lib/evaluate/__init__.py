"""Stage 5: benchmark runs, the safety set and the MMLU general-knowledge check."""

from .mmlu import (
    MMLUConfig,
    MMLUResult,
    build_prompt,
    evaluate_mmlu,
    load_mmlu_results,
    mmlu_accuracy_table,
    pick_shots,
    save_mmlu_results,
    select_questions,
)

__all__ = [
    "MMLUConfig",
    "MMLUResult",
    "mmlu_accuracy_table",
    "build_prompt",
    "evaluate_mmlu",
    "load_mmlu_results",
    "pick_shots",
    "save_mmlu_results",
    "select_questions",
]
