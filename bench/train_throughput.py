"""Training throughput of the library's training path against a bare loop, for LoRA and QLoRA.

    python bench/train_throughput.py [--steps 4] [--modes qlora lora] [--threads N]

Data: SOTOPIA-pi's released training examples (real SOTOPIA prompts of ~800-1,100 tokens and their
JSON actions), batch 1, on the embedded SmolLM2-135M. For each mode it measures
  training  train_adapter(): TRL's SFTTrainer with its data loader, collator, logging and callbacks
  bare      the same model object and the same pre-collated batches in a plain forward + backward +
            AdamW step loop, with the loss the training path uses on this device (the model's own
            cross-entropy on the CPU, TRL's fused completion-only head on CUDA), so training/bare is
            the overhead the training path adds (target >= 80%)
The first step of each phase is a warm-up and is left out. Tokens are non-padding input tokens
(prompt + completion). Peak RSS is sampled every 20 ms during each phase; memory already held by an
earlier phase counts again, so QLoRA (the smaller model) runs first. On a shared CPU the figures are
noisy: compare the ratios, which come from back-to-back phases, rather than absolute numbers.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import resource
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch
from tqdm.auto import tqdm

from sotopia_pi_lib.pi.sft_data import examples_from_released, write_examples
from sotopia_pi_lib.pi.train import prepare_training, train_adapter
from sotopia_pi_lib.pi.train_config import TrainConfig

RELEASED = Path("/work/shared/data/sotopia_pi/released_sft_format_sample.json")
GIB = 1024**3


@dataclass
class Phase:
    mode: str
    path: str
    tokens: int
    seconds: float
    peak_rss: int
    load: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


class RssPeak:
    """Highest resident set size of this process while the block runs (sampled in a thread)."""

    def __enter__(self) -> RssPeak:
        self.peak, self._stop = 0, threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def bench_config(qlora: bool, steps: int, max_length: int) -> TrainConfig:
    return TrainConfig(
        qlora=qlora,
        max_steps=steps,
        batch_size=1,
        max_length=max_length,
        save_steps=steps + 1,
        warmup_ratio=0.0,
        logging_steps=1,
    )


def run_training(config: TrainConfig, train_file: Path, workdir: Path) -> tuple[int, float]:
    result = train_adapter(config, train_file, workdir / "training")
    return sum(result.step_tokens[1:]), sum(result.step_times_s[1:])


def _loss(model, batch: dict) -> torch.Tensor:
    """The loss as the training path computes it on this device (see pi.train.PolicyTrainer)."""
    if batch["input_ids"].device.type not in ("cuda", "xpu"):
        return model(**batch, use_cache=False).loss
    out = model(**batch, fused_lm_head=True)  # TRL's head, as SFTTrainer.compute_loss calls it
    return -out.log_probs.sum() / out.label_mask.sum().clamp(min=1)


def run_bare(config: TrainConfig, train_file: Path, workdir: Path) -> tuple[int, float]:
    """The training path's own model and batches, in a loop with nothing else in it."""
    prep = prepare_training(config, train_file, workdir / "bare")
    one_epoch = list(prep.trainer.get_train_dataloader())
    batches = list(itertools.islice(itertools.cycle(one_epoch), config.max_steps))
    model = prep.trainer.model
    model.train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, fused=True
    )
    tokens, seconds = 0, 0.0
    for i, batch in enumerate(tqdm(batches, desc="bare loop", leave=False)):
        t0 = time.perf_counter()
        _loss(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:  # the first step warms up
            seconds += time.perf_counter() - t0
            tokens += int(batch["attention_mask"].sum())
    return tokens, seconds


def run_phase(mode: str, path: str, fn, *args) -> Phase:
    gc.collect()
    with RssPeak() as rss:
        tokens, seconds = fn(*args)
    return Phase(mode, path, tokens, seconds, rss.peak, psutil.getloadavg()[0])


def report(phases: list[Phase]) -> None:
    print(f"\n{'mode':6} {'path':9} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'peak RSS':>9} {'load':>5}")
    for p in phases:
        print(
            f"{p.mode:6} {p.path:9} {p.tokens:7d} {p.seconds:8.1f} {p.tokens_per_s:9.1f} "
            f"{p.peak_rss / GIB:7.2f} GiB {p.load:5.1f}"
        )
    for mode in dict.fromkeys(p.mode for p in phases):
        train = next(p for p in phases if p.mode == mode and p.path == "training")
        bare = [p for p in phases if p.mode == mode and p.path == "bare"]
        ratio = train.tokens_per_s / (sum(p.tokens for p in bare) / sum(p.seconds for p in bare))
        verdict = "OK" if ratio >= 0.8 else "BELOW TARGET"
        print(f"{mode}: training path / bare loop = {ratio:.0%} (target >= 80%: {verdict})")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"process peak RSS {peak / GIB:.2f} GiB; torch threads {torch.get_num_threads()}, "
        f"{psutil.cpu_count()} CPUs; load = 1-minute load average at the end of each phase"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per phase, the first a warm-up")
    parser.add_argument("--max-length", type=int, default=1536)
    parser.add_argument("--modes", nargs="+", choices=["qlora", "lora"], default=["qlora", "lora"])
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (1 fares better on a CPU shared with others)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    print(f"RSS after imports {psutil.Process().memory_info().rss / GIB:.2f} GiB")
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        workdir = Path(tmp)
        train_file = write_examples(workdir / "train.jsonl", examples_from_released(RELEASED))
        phases = []
        for mode in args.modes:
            config = bench_config(mode == "qlora", args.steps, args.max_length)
            # bare, training, bare: the two bare runs bracket the training run, cancelling a steady drift
            # in how busy the machine is
            phases.append(run_phase(mode, "bare", run_bare, config, train_file, workdir / mode / "b1"))
            phases.append(run_phase(mode, "training", run_training, config, train_file, workdir / mode))
            phases.append(run_phase(mode, "bare", run_bare, config, train_file, workdir / mode / "b2"))
    report(phases)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
