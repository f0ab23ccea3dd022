"""Cross-check the MMLU harness against EleutherAI's lm-evaluation-harness on the same questions.

    python bench/mmlu_crosscheck.py --per-subject 10 --shots 0 5

Both harnesses score the embedded base model on a seeded subset of MMLU's test split (the same
questions, the same shots) and the script prints, per k: both accuracies and how often the two agree
on the predicted letter, question by question.

What makes the two compute the same quantity. Our harness sends the prompt as one user chat message
and reads the log-probability of "A".."D" as the first token after the chat template's generation
prompt. lm-eval is run with `--apply_chat_template` on a task written like its own
`mmlu/default/_default_template_yaml` (same question/choices/"Answer:" text, `doc_to_choice` A-D,
`acc`), except that (1) the description line and the k solved examples are rendered inside
`doc_to_text`, so the whole prompt is one user message as in ours (lm-eval would put the description
in a system message and draw shots from the dev split, which the offline data lacks), and (2)
`target_delimiter` is "" so the scored continuation is "A", not " A". lm-eval moves the template's
trailing "\\n" into the continuation, so its log-likelihood is log P("\\n") + log P("A"); the first
term is the same for all four letters, so the predicted letters are comparable one to one, and the
log-probs agree after renormalising over the four letters (reported as max |difference|).

Cost: lm-eval cannot share one forward pass among the four letters here (the moved "\\n" makes each
continuation two tokens), so it does 4x our work; on 2 busy CPU cores, `--per-subject 5 --shots 0`
took ~10 min (ours) + ~20 min (lm-eval), and 5-shot costs ~6x more per question. `--threads 1`
avoids thread oversubscription on a shared machine.

`--plain` adds lm-eval's conventional 0-shot setting (no chat template, the description as a
prefix, " A" scored after "Answer:") on the same questions: a different quantity, shown for context.

lm-eval lives in its own virtualenv (`$LMEVAL_VENV`, default /tmp/sotopia-pi-lmeval-venv), never in
the project's; everything runs offline (HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sotopia_pi_lib.data import MMLUQuestion, ensure_embedded_model, load_mmlu
from sotopia_pi_lib.evaluate.mmlu import (
    MMLUConfig,
    MMLUResult,
    build_prompt,
    evaluate_mmlu,
    pick_shots,
    select_questions,
)
from sotopia_pi_lib.llm import LLM, ModelSpec, build_llm

LM_EVAL = "lm-eval[hf]==0.4.13"
TORCH = "torch==2.13.0"  # the CPU build on this project's machines
LETTERS = "ABCD"
DEFAULT_VENV = "/tmp/sotopia-pi-lmeval-venv"
QUESTION = (
    "{{QQ.question.strip()}}\nA. {{QQ.choices[0]}}\nB. {{QQ.choices[1]}}\n"
    "C. {{QQ.choices[2]}}\nD. {{QQ.choices[3]}}\nAnswer:"
)
HEADER = "The following are multiple choice questions (with answers) about {{subject.replace('_', ' ')}}.\n\n"
# One user message: header, solved shots, the question (our harness's prompt, in lm-eval's Jinja).
CHAT_DOC_TO_TEXT = (
    HEADER
    + "{% for s in shots %}"
    + QUESTION.replace("QQ.", "s.")
    + " {{['A', 'B', 'C', 'D'][s.answer]}}\n\n{% endfor %}"
    + QUESTION.replace("QQ.", "")
)


def ensure_venv(venv: Path) -> Path:
    """The venv's python with lm-eval installed (created on first use; torch first, for the CPU wheel)."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "lm_eval").is_file():
        print(f"installing {LM_EVAL} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for package in (TORCH, LM_EVAL):
            subprocess.run([str(python), "-m", "pip", "install", "-q", package], check=True)
    return python


def lm_eval_model_dir(model_dir: Path, folder: Path) -> Path:
    """The model folder as lm-eval can load it: links to the same files, and a config.json without
    the `quantization_config` that the GGUF conversion leaves behind (lm-eval passes gguf_file=None,
    which transformers then rejects). The weights are the very same file."""
    out = folder / "model"
    out.mkdir(exist_ok=True)
    for f in model_dir.iterdir():
        if f.name != "config.json" and not (out / f.name).exists():
            (out / f.name).symlink_to(f.resolve())
    config = json.loads((model_dir / "config.json").read_text())
    config.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def write_dataset(folder: Path, questions: list[MMLUQuestion], shots: dict[int, list[int]]) -> Path:
    """The selected questions in cais/mmlu's columns (question, subject, choices, answer) plus our
    question id and the solved shots, as JSON lines."""
    path = folder / f"mmlu_k{len(next(iter(shots.values())))}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i, js in shots.items():
            row = _row(questions[i]) | {"qid": i, "shots": [_row(questions[j]) for j in js]}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _row(q: MMLUQuestion) -> dict:
    return {"question": q.question, "subject": q.subject, "choices": list(q.choices), "answer": q.answer}


def write_task(folder: Path, name: str, data_file: Path, plain: bool) -> None:
    """A task YAML after lm-eval's mmlu/default template (see the module doc for the two changes)."""
    import yaml

    task = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": QUESTION.replace("QQ.", "") if plain else CHAT_DOC_TO_TEXT,
        "doc_to_choice": list(LETTERS),
        "doc_to_target": "answer",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    if plain:
        task["description"] = HEADER
    else:
        task["target_delimiter"] = ""
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(task, sort_keys=False, allow_unicode=True))


def run_lm_eval(python: Path, model_dir: Path, folder: Path, task: str, chat: bool, batch: int) -> Path:
    out = folder / f"out_{task}"
    cmd = [
        str(python), "-m", "lm_eval", "run", "--model", "hf",
        "--model_args", f"pretrained={model_dir},dtype=float32", "--device", "cpu",
        "--tasks", task, "--include_path", str(folder), "--num_fewshot", "0",
        "--batch_size", str(batch), "--log_samples", "--output_path", str(out),
    ]  # fmt: skip
    if chat:
        cmd.append("--apply_chat_template")
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)
    (samples,) = out.rglob(f"samples_{task}_*.jsonl")
    return samples


def read_samples(path: Path) -> dict[int, tuple[list[float], str]]:
    """qid -> (lm-eval's log-likelihood of each letter, the context it scored them after)."""
    out = {}
    with open(path, encoding="utf-8") as f:  # by "\n" only: questions hold U+2028, which splitlines cuts at
        for line in f:
            s = json.loads(line)
            context = s["arguments"]["gen_args_0"]["arg_0"]
            out[int(s["doc"]["qid"])] = ([float(r[0]) for r in s["filtered_resps"]], context)
    return out


def renormalised(logprobs: list[float]) -> list[float]:
    top = max(logprobs)
    log_z = top + math.log(sum(math.exp(x - top) for x in logprobs))
    return [x - log_z for x in logprobs]


def compare(
    ours: list[MMLUResult],
    theirs: dict[int, tuple[list[float], str]],
    prompts: dict[int, str],
    answers: dict[int, int],
) -> dict:
    """Agreement of predicted letters, both accuracies, and how many of lm-eval's contexts hold our
    prompt text verbatim (so a difference cannot hide in the prompt)."""
    if {r.index for r in ours} != set(theirs):
        raise SystemExit("the two harnesses scored different questions")
    agree, diff, lm_correct, same_prompt = 0, 0.0, 0, 0
    for r in ours:
        lls, context = theirs[r.index]
        same_prompt += prompts[r.index] in context
        lm_pred = LETTERS[max(range(4), key=lls.__getitem__)]
        agree += lm_pred == r.predicted
        lm_correct += LETTERS.index(lm_pred) == answers[r.index]
        if r.logprobs is not None:
            ours_n = renormalised([r.logprobs[c] for c in LETTERS])
            diff = max(diff, *(abs(a - b) for a, b in zip(ours_n, renormalised(lls), strict=True)))
    n = len(ours)
    return {
        "n": n,
        "ours_accuracy": sum(r.correct for r in ours) / n,
        "lm_eval_accuracy": lm_correct / n,
        "agreement": agree / n,
        "same_prompt": same_prompt / n,
        "max_abs_renormalised_logprob_diff": diff,
    }


def check(
    args: argparse.Namespace,
    k: int,
    llm: LLM,
    questions: list[MMLUQuestion],
    python: Path,
    model_dir: Path,
    folder: Path,
) -> dict:
    """Both harnesses on the same questions and shots for one k; the lines to report."""
    cfg = MMLUConfig(k_shot=k, per_subject=args.per_subject, seed=args.seed, method="logprobs")
    targets = select_questions(questions, cfg)
    shots = pick_shots(questions, targets, cfg)
    data = write_dataset(folder, questions, shots)
    answers = {i: questions[i].answer for i in targets}
    prompts = {i: build_prompt(questions[i], [questions[j] for j in js]) for i, js in shots.items()}
    t0 = time.perf_counter()
    ours = evaluate_mmlu(llm, questions, cfg)
    t_ours = time.perf_counter() - t0
    write_task(folder, f"mmlu_xcheck_k{k}", data, plain=False)
    t0 = time.perf_counter()
    theirs = read_samples(run_lm_eval(python, model_dir, folder, f"mmlu_xcheck_k{k}", True, args.batch_size))
    times = {"ours_s": round(t_ours), "lm_eval_s": round(time.perf_counter() - t0)}
    lines = {f"k={k}": compare(ours, theirs, prompts, answers) | times}
    if args.plain and k == 0:
        write_task(folder, "mmlu_xcheck_plain", data, plain=True)
        plain = read_samples(
            run_lm_eval(python, model_dir, folder, "mmlu_xcheck_plain", False, args.batch_size)
        )
        lines["plain k=0 (different quantity)"] = compare(ours, plain, prompts, answers)
    return lines


def print_line(name: str, r: dict) -> None:
    print(
        f"{name}: n={r['n']}  ours {r['ours_accuracy']:.4f}  lm-eval {r['lm_eval_accuracy']:.4f}  "
        f"agreement {r['agreement']:.4f}  same prompt {r['same_prompt']:.4f}  max |Δ renormalised log-prob| "
        f"{r['max_abs_renormalised_logprob_diff']:.2e}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-subject", type=int, default=10, help="questions per subject (57 subjects)")
    ap.add_argument("--shots", type=int, nargs="+", default=[0, 5], help="k values to check")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16, help="lm-eval's batch size")
    ap.add_argument("--plain", action="store_true", help="also run lm-eval's conventional non-chat 0-shot")
    ap.add_argument("--venv", type=Path, default=Path(os.environ.get("LMEVAL_VENV", DEFAULT_VENV)))
    ap.add_argument("--report", type=Path, help="write the numbers as JSON here")
    ap.add_argument("--threads", type=int, help="CPU threads per harness (1 is fastest on a busy machine)")
    args = ap.parse_args()
    os.environ |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by the lm-eval process's torch

    python, questions = ensure_venv(args.venv), load_mmlu()
    llm = build_llm(ModelSpec(backend="hf", model="embedded"), cache=None)
    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="mmlu-xcheck-") as tmp:
        folder = Path(tmp)
        model_dir = lm_eval_model_dir(ensure_embedded_model(), folder)
        for k in args.shots:
            lines = check(args, k, llm, questions, python, model_dir, folder)
            for name, r in lines.items():
                print_line(name, r)
            report |= lines
            if args.report:
                args.report.write_text(json.dumps(report, indent=2))
    print("\nsummary")
    for name, r in report.items():
        print_line(name, r)


if __name__ == "__main__":
    main()
