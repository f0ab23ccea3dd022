"""MMLU results and safety compliance flags of a run, as tidy tables.

Both are optional per model: a model without an MMLU file or a flags file has no rows, and the
figures and summary show it as "no data" rather than as a zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..errors import DataError
from ..evaluate.compliance import ComplianceFlag
from ..evaluate.mmlu import load_mmlu_results as _read_mmlu
from ..evaluate.mmlu import results_frame
from ..store.jsonl import read_jsonl
from ..store.run import RunPaths
from .results import MODEL_ORDER, check_models


def load_mmlu_results(paths: RunPaths, models: Sequence[str] = MODEL_ORDER) -> pd.DataFrame:
    """One row per question and model (model, index, subject, category, correct, predicted, ...);
    a model without an MMLU file has no rows (a gap, not an error)."""
    runs = {m: _read_mmlu(paths.mmlu(m)) for m in check_models(models) if paths.mmlu(m).is_file()}
    runs = {m: rs for m, rs in runs.items() if rs}
    if not runs:
        return pd.DataFrame(
            columns=[
                "model",
                "index",
                "subject",
                "category",
                "k_shot",
                "answer",
                "predicted",
                "correct",
                "method",
                "error",
            ]
        )
    return results_frame(runs)


def load_safety(paths: RunPaths, models: Sequence[str] = MODEL_ORDER) -> pd.DataFrame:
    """Judged compliance flags: model, episode_id, agent, codename, complied (True/False/None when the
    judge's answer failed), evidence, judge, version, error. Models without a flags file have no rows."""
    rows = []
    for model in check_models(models):
        path = paths.compliance(model)
        for flag in read_jsonl(path, ComplianceFlag):
            if flag.model.split("@")[0] != model:
                raise DataError(
                    f"{path}: flag for episode {flag.episode_id} names model {flag.model!r}, "
                    f"the file is for {model!r}"
                )
            rows.append(flag.model_dump() | {"model": model})
    columns = [*ComplianceFlag.model_fields]
    return pd.DataFrame(rows, columns=columns)
