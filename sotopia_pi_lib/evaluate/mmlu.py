"""MMLU general-knowledge check: k-shot prompts, letter scoring, per-subject and per-category accuracy.

The prompt is the standard MMLU format, written to match lm-evaluation-harness's `mmlu` default
template (`lm_eval/tasks/mmlu/default/_default_template_yaml`: description, `question.strip()`, the
four lettered choices, "Answer:"), so that `bench/mmlu_crosscheck.py` can run lm-eval on the same
prompts; SOTOPIA-pi's own evaluation (LLaMA-Factory's `src/evaluate.py`, template `vanilla`, 5 shots)
builds the same text. It is sent either as ONE user chat message (`prompt_format: chat`) or, as the
official evaluation does, as plain text without a chat template (`plain`, scored as " A".." D").
Two ways to read the answer:

- logprobs (hf, vllm): the log-probability of each answer letter as the first token of the reply.
  After the chat template's generation prompt (`<|im_start|>assistant\\n` for SmolLM2) a reply starts
  without a space, so the default choices are "A".."D"; `choice_prefix=" "` scores " A".." D", which
  is what lm-eval scores after "Answer:" when no chat template is applied.
- generate (openai, no log-probs): a JSON object {"answer": "A"|"B"|"C"|"D"} at temperature 0,
  constrained by a JSON schema, so the reply is one letter.

Shots: the official evaluation takes them from MMLU's dev split (5 per subject, shuffled), which only
the hub has (`shots_from: dev`). Offline, or with `shots_from: test`, they are k other questions of the
same subject from the test split, drawn with a seed, never the question itself; every result records
where its shots came from, so the fallback is labelled wherever results are shown.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from ..data.mmlu import LETTERS, SUBJECT_CATEGORY, MMLUQuestion
from ..errors import ConfigError, DataError
from ..llm.base import LLM
from ..llm.types import LLMRequest, LLMResponse, Message, SamplingParams
from ..store.files import atomic_write_text
from ..store.jsonl import read_jsonl, to_json_line

log = logging.getLogger(__name__)
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": list(LETTERS)}},
    "required": ["answer"],
    "additionalProperties": False,
}
Scored = tuple[str | None, dict[str, float] | None, str | None]  # predicted letter, log-probs, error
CHUNK = 256  # prompts per backend call: big enough for batching, small enough to show progress and cache


class MMLUConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    k_shot: int = Field(0, ge=0, le=5, description="solved examples before each question")
    per_subject: int | None = Field(None, ge=1, description="seeded subset size per subject; None = all")
    seed: int = 0
    choice_prefix: Literal["", " "] = Field("", description='"" scores "A", " " scores " A" (see module doc)')
    method: Literal["auto", "logprobs", "generate"] = "auto"
    prompt_format: Literal["chat", "plain"] = Field("chat", description="plain: no chat template (official)")
    shots_from: Literal["test", "dev"] = Field("test", description="dev: MMLU's dev split (official; hub only)")

    @model_validator(mode="after")
    def _plain_needs_logprobs(self) -> MMLUConfig:
        if self.prompt_format == "plain" and self.method == "generate":
            raise ValueError("prompt_format plain is scored by log-probabilities; method generate needs chat")
        return self


class MMLUResult(BaseModel):
    """One scored question; `index` is its position in load_mmlu()'s list (stable for one data file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    subject: str
    category: str
    k_shot: int
    answer: Literal["A", "B", "C", "D"]
    predicted: Literal["A", "B", "C", "D"] | None = Field(description="None when the reply had no letter")
    correct: bool
    logprobs: dict[str, float] | None = None
    method: Literal["logprobs", "generate"]
    shots_from: Literal["test", "dev"] = "test"
    prompt_format: Literal["chat", "plain"] = "chat"
    error: str | None = None


# --- selection and prompts ---------------------------------------------------------------------


def select_questions(questions: Sequence[MMLUQuestion], cfg: MMLUConfig) -> list[int]:
    """Indices to evaluate: all, or `per_subject` per subject drawn with a per-subject seed (so one
    subject's subset does not depend on which other subjects are present), in index order."""
    if not questions:
        raise DataError("no MMLU questions to evaluate (load_mmlu() returned an empty list)")
    if cfg.per_subject is None:
        return list(range(len(questions)))
    chosen: list[int] = []
    for subject, pool in sorted(_by_subject(questions).items()):
        rng = random.Random(f"{cfg.seed}/subset/{subject}")
        chosen += rng.sample(pool, min(cfg.per_subject, len(pool)))
    return sorted(chosen)


def pick_shots(
    questions: Sequence[MMLUQuestion], targets: Sequence[int], cfg: MMLUConfig,
    pool: Sequence[MMLUQuestion] | None = None,
) -> dict[int, list[int]]:
    """For each target index, `k_shot` indices of solved questions of the same subject (seeded per
    target): into `pool` (the dev split) when given, else other questions of `questions` itself."""
    source = questions if pool is None else pool
    pools = _by_subject(source)
    shots = {}
    for i in targets:
        others = [j for j in pools.get(questions[i].subject, []) if pool is not None or j != i]
        if len(others) < cfg.k_shot:
            raise ConfigError(
                f"mmlu.k_shot={cfg.k_shot} but subject {questions[i].subject!r} has only {len(others)} solved "
                f"questions to show from the {'dev' if pool is not None else 'test'} split"
            )
        shots[i] = random.Random(f"{cfg.seed}/shots/{i}").sample(others, cfg.k_shot)
    return shots


def _by_subject(questions: Sequence[MMLUQuestion]) -> dict[str, list[int]]:
    pools: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(questions):
        pools[q.subject].append(i)
    return pools


def format_question(q: MMLUQuestion) -> str:
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, q.choices, strict=True))
    return f"{q.question.strip()}{options}\nAnswer:"


def build_prompt(target: MMLUQuestion, shots: Sequence[MMLUQuestion]) -> str:
    header = f"The following are multiple choice questions (with answers) about {target.subject.replace('_', ' ')}.\n\n"
    solved = "".join(f"{format_question(s)} {LETTERS[s.answer]}\n\n" for s in shots)
    return header + solved + format_question(target)


def prompt_messages(
    questions: Sequence[MMLUQuestion], index: int, shots: Sequence[int],
    pool: Sequence[MMLUQuestion] | None = None, prompt_format: Literal["chat", "plain"] = "chat",
) -> tuple[Message, ...] | str:
    """The prompt for one question: one user message, or the plain text itself (no chat template)."""
    source = questions if pool is None else pool
    text = build_prompt(questions[index], [source[j] for j in shots])
    return text if prompt_format == "plain" else (Message(role="user", content=text),)


# --- evaluation --------------------------------------------------------------------------------


def supports_logprobs(llm: LLM) -> bool:
    """Whether the backend overrides choice_logprobs (looking through the cache wrapper)."""
    inner = getattr(llm, "inner", llm)
    return type(inner).choice_logprobs is not LLM.choice_logprobs


def resolve_method(llm: LLM, cfg: MMLUConfig) -> Literal["logprobs", "generate"]:
    if cfg.prompt_format == "plain" and not supports_logprobs(llm):
        raise ConfigError(f"mmlu.prompt_format=plain is scored by log-probabilities, which {llm.spec.label} does not "
                          "give; use prompt_format chat, or mmlu.backend: hf to score the policy's weights locally")
    if cfg.method == "auto":
        return "logprobs" if supports_logprobs(llm) else "generate"
    if cfg.method == "logprobs" and not supports_logprobs(llm):
        raise ConfigError(
            f"mmlu.method=logprobs but {llm.spec.label} has no log-probabilities; use auto or generate"
        )
    return cfg.method


def evaluate_mmlu(
    llm: LLM, questions: Sequence[MMLUQuestion], cfg: MMLUConfig, *, dev: Sequence[MMLUQuestion] | None = None,
    progress: bool = True,
) -> list[MMLUResult]:
    """Score the selected questions with one model; prints a one-line summary at the end.

    With `shots_from: dev`, `dev` is the dev split; None (it could not be loaded) falls back to
    test-split shots, with a warning, and the results record it."""
    method = resolve_method(llm, cfg)
    if cfg.shots_from == "dev" and dev is None and cfg.k_shot > 0:
        log.warning("MMLU: the dev split is not available; few-shot examples come from the test split")
    pool = dev if cfg.shots_from == "dev" else None
    cfg = cfg.model_copy(update={"shots_from": "dev" if pool is not None else "test"})
    targets = select_questions(questions, cfg)
    shots = pick_shots(questions, targets, cfg, pool)
    prompts = [prompt_messages(questions, i, shots[i], pool, cfg.prompt_format) for i in targets]
    if method == "logprobs":
        scored = [_from_logprobs(lp) for lp in _all_logprobs(llm, prompts, cfg, progress)]
    else:
        scored = [_from_response(r) for r in _all_generations(llm, prompts, progress)]
    results = [_result(questions[i], i, cfg, method, s) for i, s in zip(targets, scored, strict=True)]
    if progress:
        tqdm.write(summary_line(results, llm.spec.label))
    return results


def _all_logprobs(
    llm: LLM, prompts: list[tuple[Message, ...] | str], cfg: MMLUConfig, progress: bool
) -> list[dict]:
    choices = [cfg.choice_prefix + letter for letter in LETTERS]
    out: list[dict[str, float]] = []
    with tqdm(total=len(prompts), desc=f"MMLU {llm.spec.label}", unit="q", disable=not progress) as bar:
        for start in range(0, len(prompts), CHUNK):
            batch = llm.choice_logprobs(prompts[start : start + CHUNK], choices)
            out += [{c.strip(): lp[c] for c in choices} for lp in batch]
            bar.update(len(batch))
    return out


def _all_generations(llm: LLM, prompts: list[tuple[Message, ...]], progress: bool) -> list[LLMResponse]:
    sampling = SamplingParams(temperature=0.0, max_tokens=16)
    requests = [LLMRequest(messages=p, json_schema=ANSWER_SCHEMA, sampling=sampling) for p in prompts]
    return llm.generate(requests, progress=progress)


def _from_logprobs(logprobs: dict[str, float]) -> Scored:
    return max(LETTERS, key=lambda letter: logprobs[letter]), logprobs, None


def _from_response(response: LLMResponse) -> Scored:
    if not response.ok:
        return None, None, response.error
    parsed = response.parsed if isinstance(response.parsed, dict) else {}
    letter = str(parsed.get("answer", "")).strip().upper()
    if letter not in LETTERS:
        return None, None, f"no answer letter in {response.text!r:.80}"
    return letter, None, None


def _result(q: MMLUQuestion, index: int, cfg: MMLUConfig, method: str, scored: Scored) -> MMLUResult:
    answer, (predicted, logprobs, error) = LETTERS[q.answer], scored
    return MMLUResult(
        index=index, subject=q.subject, category=q.category, k_shot=cfg.k_shot, answer=answer,
        predicted=predicted, correct=predicted == answer, logprobs=logprobs, method=method, error=error,
        shots_from=cfg.shots_from, prompt_format=cfg.prompt_format,
    )  # fmt: skip


def summary_line(results: Sequence[MMLUResult], label: str) -> str:
    n = len(results)
    acc = sum(r.correct for r in results) / n if n else float("nan")
    failed = sum(r.predicted is None for r in results)
    subjects = len({r.subject for r in results})
    return (
        f"MMLU {label}: accuracy {acc:.3f} on {n} questions ({subjects} subjects), {failed} without an answer"
    )


# --- results files and tables ------------------------------------------------------------------


def save_mmlu_results(path: str | Path, results: Sequence[MMLUResult]) -> Path:
    """Write all results at once (atomic: a crash never leaves a half file that looks finished)."""
    return atomic_write_text(path, "".join(to_json_line(r).decode("utf-8") for r in results))


def load_mmlu_results(path: str | Path) -> list[MMLUResult]:
    if not Path(path).is_file():
        raise DataError(f"no MMLU results file at {path}")
    results = read_jsonl(path, MMLUResult)
    for r in results:
        if SUBJECT_CATEGORY.get(r.subject) != r.category:
            raise DataError(
                f"{path}: result {r.index} has unknown subject/category {r.subject!r}/{r.category!r}"
            )
    return results


def results_frame(results: Sequence[MMLUResult] | Mapping[str, Sequence[MMLUResult]]) -> pd.DataFrame:
    """One row per question; a mapping of model label -> results adds a `model` column."""
    runs = results if isinstance(results, Mapping) else {"": results}
    rows = [r.model_dump(exclude={"logprobs"}) | {"model": m} for m, rs in runs.items() for r in rs]
    if not rows:
        raise DataError("no MMLU results to tabulate")
    return pd.DataFrame(rows)


def mmlu_accuracy_table(
    results: Sequence[MMLUResult] | Mapping[str, Sequence[MMLUResult]],
    by: Literal["subject", "category", "overall"] = "category",
) -> pd.DataFrame:
    """Accuracy (over questions) with n and the number of unanswered questions, per model and group.

    `overall` also gives the mean of subject accuracies (`subject_macro`), which equals the question
    mean when every subject has the same n (a balanced subset) and differs on the full test set.
    """
    df = results_frame(results)
    df["unanswered"] = df["predicted"].isna()
    keys = ["model"] + ({"subject": ["category", "subject"], "category": ["category"]}.get(by, []))
    table = df.groupby(keys, sort=True).agg(
        n=("correct", "size"), accuracy=("correct", "mean"), unanswered=("unanswered", "sum")
    )
    if by == "overall":
        per_subject = df.groupby(["model", "subject"])["correct"].mean().groupby("model").mean()
        table["subject_macro"] = per_subject
    table = table.reset_index()
    return table.drop(columns="model") if not isinstance(results, Mapping) else table
