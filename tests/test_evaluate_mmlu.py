"""The MMLU harness: prompt format, shot and subset selection, tables, files, and a real-model check."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sotopia_pi_lib.data import MMLUQuestion, load_mmlu
from sotopia_pi_lib.errors import ConfigError, DataError
from sotopia_pi_lib.evaluate.mmlu import (
    MMLUConfig,
    MMLUResult,
    build_prompt,
    evaluate_mmlu,
    load_mmlu_results,
    mmlu_accuracy_table,
    pick_shots,
    prompt_messages,
    resolve_method,
    save_mmlu_results,
    select_questions,
)
from sotopia_pi_lib.llm import LLM, ModelSpec, build_llm


@pytest.fixture(scope="module")
def mmlu() -> list[MMLUQuestion]:
    return load_mmlu()


def _q(question: str, answer: int, subject: str = "high_school_physics") -> MMLUQuestion:
    return MMLUQuestion(subject=subject, question=question, choices=("1", "2", "3", "4"), answer=answer)


def test_prompt_matches_the_standard_mmlu_format() -> None:
    target = _q("  What is 2+2?\n", answer=3)
    shots = [_q("What is 1+1?", answer=1), _q("What is 0+1?", answer=0)]
    assert build_prompt(target, shots) == (
        "The following are multiple choice questions (with answers) about high school physics.\n\n"
        "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
        "What is 0+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: A\n\n"
        "What is 2+2?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    )
    assert build_prompt(target, []).endswith(
        "about high school physics.\n\nWhat is 2+2?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    )
    (message,) = prompt_messages([target, *shots], 0, [1, 2])
    assert message.role == "user" and message.content == build_prompt(target, shots)


def test_shots_come_from_other_questions_of_the_same_subject(mmlu: list[MMLUQuestion]) -> None:
    cfg = MMLUConfig(k_shot=5, seed=3)
    targets = list(range(0, len(mmlu), 7))
    shots = pick_shots(mmlu, targets, cfg)
    assert set(shots) == set(targets)
    for i, js in shots.items():
        assert len(js) == 5 == len(set(js))
        assert i not in js
        assert all(mmlu[j].subject == mmlu[i].subject for j in js)
    assert pick_shots(mmlu, targets, cfg) == shots
    assert pick_shots(mmlu, targets, MMLUConfig(k_shot=5, seed=4)) != shots
    assert len({tuple(js) for js in shots.values()}) > len(shots) // 2  # drawn per question, not fixed


def test_shots_exclude_the_target_even_when_the_subject_is_tiny() -> None:
    qs = [_q(f"q{i}", i % 4) for i in range(3)]
    shots = pick_shots(qs, [0, 1, 2], MMLUConfig(k_shot=2))
    assert {i: sorted(js) for i, js in shots.items()} == {0: [1, 2], 1: [0, 2], 2: [0, 1]}
    with pytest.raises(ConfigError, match="k_shot=3.*high_school_physics.*only 2"):
        pick_shots(qs, [0], MMLUConfig(k_shot=3))


def test_subset_is_seeded_balanced_and_independent_per_subject(mmlu: list[MMLUQuestion]) -> None:
    cfg = MMLUConfig(per_subject=4, seed=1)
    chosen = select_questions(mmlu, cfg)
    per_subject = Counter(mmlu[i].subject for i in chosen)
    assert len(per_subject) == 57 and set(per_subject.values()) == {4}
    assert chosen == sorted(chosen) == select_questions(mmlu, cfg)
    assert chosen != select_questions(mmlu, MMLUConfig(per_subject=4, seed=2))
    algebra = [q for q in mmlu if q.subject == "abstract_algebra"]
    only = [algebra[i].question for i in select_questions(algebra, cfg)]
    assert only == [mmlu[i].question for i in chosen if mmlu[i].subject == "abstract_algebra"]
    assert select_questions(algebra, MMLUConfig(per_subject=10_000)) == list(range(len(algebra)))
    assert len(select_questions(mmlu, MMLUConfig())) == 14_042
    with pytest.raises(DataError, match="no MMLU questions"):
        select_questions([], cfg)


def test_config_rejects_unknown_keys_and_out_of_range_k() -> None:
    with pytest.raises(ValueError, match="extra"):
        MMLUConfig.model_validate({"kshot": 5})
    with pytest.raises(ValueError, match="k_shot"):
        MMLUConfig(k_shot=6)


def _result(index: int, subject: str, category: str, answer: str, predicted: str | None) -> MMLUResult:
    return MMLUResult(
        index=index, subject=subject, category=category, k_shot=0, answer=answer, predicted=predicted,
        correct=answer == predicted, method="generate",
    )  # fmt: skip


HAND_MADE = [
    _result(0, "astronomy", "STEM", "A", "A"),
    _result(1, "astronomy", "STEM", "B", "B"),
    _result(2, "astronomy", "STEM", "C", "A"),
    _result(3, "anatomy", "other", "D", None),
    _result(4, "philosophy", "humanities", "A", "A"),
    _result(5, "philosophy", "humanities", "B", "C"),
]


def test_accuracy_tables_by_subject_category_and_overall() -> None:
    by_subject = mmlu_accuracy_table(HAND_MADE, by="subject").set_index("subject")
    assert by_subject.loc["astronomy", ["n", "unanswered"]].tolist() == [3, 0]
    assert by_subject.loc["astronomy", "accuracy"] == pytest.approx(2 / 3)
    assert by_subject.loc["anatomy", ["n", "accuracy", "unanswered"]].tolist() == [1, 0.0, 1]
    by_category = mmlu_accuracy_table(HAND_MADE, by="category").set_index("category")
    assert by_category["n"].to_dict() == {"STEM": 3, "humanities": 2, "other": 1}
    assert by_category.loc["humanities", "accuracy"] == 0.5
    overall = mmlu_accuracy_table(HAND_MADE, by="overall")
    assert overall[["n", "unanswered"]].iloc[0].tolist() == [6, 1]
    assert overall["accuracy"].iloc[0] == pytest.approx(3 / 6)
    assert overall["subject_macro"].iloc[0] == pytest.approx((2 / 3 + 0 + 0.5) / 3)


def test_accuracy_table_per_model_and_empty_input() -> None:
    table = mmlu_accuracy_table({"base": HAND_MADE, "bc": HAND_MADE[:2]}, by="overall").set_index("model")
    assert table.loc["base", "n"] == 6 and table.loc["bc", "accuracy"] == 1.0
    with pytest.raises(DataError, match="no MMLU results"):
        mmlu_accuracy_table([], by="overall")


def test_results_round_trip_and_bad_files(tmp_path: Path) -> None:
    path = save_mmlu_results(tmp_path / "mmlu" / "base.jsonl", HAND_MADE)
    assert load_mmlu_results(path) == HAND_MADE
    assert not list(path.parent.glob(".*.tmp"))
    bad = json.loads(path.read_text().splitlines()[0]) | {"predicted": "E"}
    path.write_text(path.read_text() + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"base\.jsonl:7: not a valid MMLUResult"):
        load_mmlu_results(path)
    wrong = tmp_path / "wrong.jsonl"
    save_mmlu_results(wrong, [HAND_MADE[0].model_copy(update={"category": "humanities"})])
    with pytest.raises(DataError, match="unknown subject/category 'astronomy'/'humanities'"):
        load_mmlu_results(wrong)
    with pytest.raises(DataError, match="no MMLU results file"):
        load_mmlu_results(tmp_path / "missing.jsonl")


def test_method_follows_what_the_backend_can_do() -> None:
    local_server = {"base_url": "http://127.0.0.1:9/v1"}  # nothing is sent: building connects to nothing
    openai = build_llm(ModelSpec(backend="openai", model="served", options=local_server), cache=None)
    hf = build_llm(ModelSpec(backend="hf", model="embedded"), cache=None)  # weights load on first use
    assert resolve_method(openai, MMLUConfig()) == "generate"
    assert resolve_method(hf, MMLUConfig()) == "logprobs"
    assert resolve_method(hf, MMLUConfig(method="generate")) == "generate"
    with pytest.raises(ConfigError, match="no log-probabilities"):
        resolve_method(openai, MMLUConfig(method="logprobs"))


@pytest.fixture(scope="module")
def embedded_llm(embedded_model_dir: Path) -> Iterator[LLM]:
    """The embedded model behind the hf backend, uncached so every test really runs it; float32, as the
    direct forward it is compared with (bf16 padding and batching round differently)."""
    options = {"dtype": "float32"}
    llm = build_llm(ModelSpec(backend="hf", model=str(embedded_model_dir), options=options), cache=None)
    yield llm
    llm.close()


def _small_pool(mmlu: list[MMLUQuestion]) -> list[MMLUQuestion]:
    """8 questions from each of 4 subjects, one per category, chosen for short questions (fast on a CPU)."""
    subjects = ("conceptual_physics", "world_religions", "high_school_geography", "management")
    return [q for s in subjects for q in [q for q in mmlu if q.subject == s][:8]]


@pytest.mark.model
def test_predictions_equal_a_direct_transformers_forward_pass(mmlu, embedded_llm, embedded_model_dir) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pool, cfg = _small_pool(mmlu), MMLUConfig(k_shot=0, per_subject=5, seed=0)
    results = evaluate_mmlu(embedded_llm, pool, cfg, progress=False)
    assert len(results) == 20 and {r.method for r in results} == {"logprobs"}
    assert set(Counter(r.category for r in results).values()) == {5}

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    net = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32).eval()
    letter_ids = [tok.convert_tokens_to_ids(letter) for letter in "ABCD"]
    shots = pick_shots(pool, [r.index for r in results], cfg)
    for r in results:
        q = pool[r.index]
        assert (r.subject, r.answer) == (q.subject, "ABCD"[q.answer])
        assert r.correct == (r.predicted == r.answer)
        text = tok.apply_chat_template(
            [{"role": "user", "content": build_prompt(q, [pool[j] for j in shots[r.index]])}],
            add_generation_prompt=True, tokenize=False,
        )  # fmt: skip
        with torch.inference_mode():
            logits = net(**tok(text, return_tensors="pt", add_special_tokens=False)).logits[0, -1]
        direct = torch.log_softmax(logits.float(), -1)[letter_ids]
        assert r.predicted == "ABCD"[int(direct.argmax())]
        assert [r.logprobs[c] for c in "ABCD"] == pytest.approx(direct.tolist(), abs=1e-3)


@pytest.mark.model
def test_generate_method_answers_with_one_letter_on_the_real_model(mmlu, embedded_llm) -> None:
    pool = _small_pool(mmlu)
    results = evaluate_mmlu(embedded_llm, pool, MMLUConfig(per_subject=1, method="generate"), progress=False)
    assert len(results) == 4
    for r in results:
        assert r.method == "generate" and r.logprobs is None and r.error is None
        assert r.predicted in ("A", "B", "C", "D")


def test_dev_shots_come_from_the_dev_pool_and_are_labelled(mmlu) -> None:
    """The official evaluation's shots: solved dev-split questions of the same subject."""
    pool = _small_pool(mmlu)
    dev = [q.model_copy(update={"question": f"DEV {i} {q.question}"}) for i, q in enumerate(pool)]
    cfg = MMLUConfig(k_shot=3, shots_from="dev", prompt_format="plain", choice_prefix=" ")
    shots = pick_shots(pool, [0, 8], cfg, dev)
    assert all(dev[j].subject == pool[i].subject for i in (0, 8) for j in shots[i])
    assert all(len(set(shots[i])) == 3 for i in (0, 8))
    text = prompt_messages(pool, 0, shots[0], dev, "plain")
    assert isinstance(text, str) and text.count("DEV ") == 3 and text.endswith("\nAnswer:")
    with pytest.raises(ValueError, match="scored by log-probabilities"):
        MMLUConfig(prompt_format="plain", method="generate")


@pytest.mark.model
def test_plain_prompts_are_scored_without_a_chat_template(mmlu, embedded_llm, embedded_model_dir) -> None:
    """prompt_format plain (the official evaluation): the text as a document, " A".." D" as the next
    token; equal to a direct forward; the test-split fallback is labelled on every result."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pool = _small_pool(mmlu)
    cfg = MMLUConfig(k_shot=2, per_subject=1, shots_from="dev", prompt_format="plain", choice_prefix=" ")
    results = evaluate_mmlu(embedded_llm, pool, cfg, dev=None, progress=False)
    assert {(r.shots_from, r.prompt_format) for r in results} == {("test", "plain")}
    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    net = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32).eval()
    letter_ids = [tok.encode(" " + letter, add_special_tokens=False)[0] for letter in "ABCD"]
    shots = pick_shots(pool, [r.index for r in results], cfg.model_copy(update={"shots_from": "test"}))
    for r in results:
        text = build_prompt(pool[r.index], [pool[j] for j in shots[r.index]])
        assert "<|im_start|>" not in text
        with torch.inference_mode():
            logits = net(**tok(text, return_tensors="pt")).logits[0, -1]
        direct = torch.log_softmax(logits.float(), -1)[letter_ids]
        assert [r.logprobs[c] for c in "ABCD"] == pytest.approx(direct.tolist(), abs=1e-3)
