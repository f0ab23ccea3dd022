"""What LoRA variants cost on the hf engine: adapters loaded unmerged on one shared base vs merged copies.

A stage evaluating the policy's variants (base, SR, BC, BC+SR) loads the base once with every adapter
beside each other (peft, unmerged; llm/hf_base.py) rather than merging each adapter into its own
copy of the weights. Unmerged, an adapter's rows pay for its low-rank matrices on q_proj and v_proj,
and the base's rows go through peft's wrappers with the adapters switched off. Four models, timed in
alternating rounds on the same requests (16 SOTOPIA-like action prompts, temperature 1.0, the action
schema, 64 tokens, no KV kept between rounds):

  base alone       the embedded model, no adapter anywhere (what the engine was tuned on)
  base, shared     the base variant of a model holding three adapters (all switched off)
  adapter, shared  one of those adapters, unmerged on the shared packed base
  adapter, merged  the same adapter merged into its own copy of the weights (the former way)

Prints generated tokens/s and milliseconds per decode step of each (medians over the rounds), and
the ratios that matter: base shared / base alone and adapter shared / adapter merged. The adapters
are random (init_lora_weights=False): speed does not depend on what they learnt.

    python bench/adapters.py
    python bench/adapters.py --rounds 5 --dtype float32
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see bench/llm_throughput.py)

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import _report
import torch
from llm_throughput import action_requests

from sotopia_pi_lib.data import ensure_embedded_model
from sotopia_pi_lib.llm.hf import HFModel
from sotopia_pi_lib.llm.pool import EnginePool
from sotopia_pi_lib.llm.types import ModelSpec


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--dtype", default="auto")
    return p.parse_args()


def random_adapters(folder: Path, n: int) -> list[Path]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = []
    for k in range(n):
        torch.manual_seed(k)
        net = AutoModelForCausalLM.from_pretrained(ensure_embedded_model())
        lora = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(net, lora).save_pretrained(folder / f"lora{k}")
        out.append(folder / f"lora{k}")
    return out


def merged_copy(adapter: Path, folder: Path) -> Path:
    """The embedded model with `adapter` merged into its weights, saved as a model folder."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = ensure_embedded_model()
    net = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload()
    net.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


def measure(model: HFModel, requests: list) -> tuple[float, float]:
    """(generated tokens/s, ms per decode step) of one generate call."""
    model.reset_stats()
    t0 = time.perf_counter()
    out = model.generate(requests)
    seconds = time.perf_counter() - t0
    assert all(r.ok for r in out), [r.error for r in out if not r.ok]
    s = model.stats
    return sum(r.completion_tokens for r in out) / seconds, 1000 * s.forward_s / max(1, s.steps)


def main() -> None:
    args = parse_args()
    options = {"dtype": args.dtype, "kv_cache_bytes": 0}
    with tempfile.TemporaryDirectory() as tmp:
        adapters = random_adapters(Path(tmp), 3)
        pool = EnginePool()
        shared = [HFModel(ModelSpec(backend="hf", model="embedded", adapter=a and str(a), options=options),
                          pool.bases.setdefault("shared", HFModel.Base(ModelSpec(backend="hf", model="embedded",
                                                                                 options=options))))
                  for a in (None, *adapters)]  # fmt: skip
        models = {
            "base alone": HFModel(ModelSpec(backend="hf", model="embedded", options=options)),
            "base, shared": shared[0],
            "adapter, shared": shared[1],
            "adapter, merged": HFModel(ModelSpec(backend="hf", model=str(merged_copy(adapters[0], Path(tmp) / "m")),
                                                 options=options)),
        }  # fmt: skip
        requests = action_requests(args.requests, max_tokens=args.max_tokens)
        for m in models.values():
            m.generate(action_requests(1, max_tokens=8, offset=1000))  # load and compile, untimed
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in models}
        for _ in range(args.rounds):
            for name, m in models.items():
                times[name].append(measure(m, requests))
        assert shared[0].base.loads == 1 and models["base, shared"].path == "engine"
    rows = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for k, v in times.items()}
    lines = ["| model | tokens/s | ms per decode step |", "| --- | ---: | ---: |"]
    lines += [f"| {k} | {tps:.1f} | {ms:.1f} |" for k, (tps, ms) in rows.items()]
    ratios = [
        f"base shared / base alone: {rows['base, shared'][0] / rows['base alone'][0]:.2f}x tokens/s",
        f"adapter shared / adapter merged: {rows['adapter, shared'][0] / rows['adapter, merged'][0]:.2f}x tokens/s",
    ]
    load = os.getloadavg()[0]
    print("\n".join(lines + ratios) + f"\n(median of {args.rounds} alternating rounds; load {load:.1f})")
    body = (f"{args.requests} SOTOPIA-like action requests, temperature 1.0, {args.max_tokens} tokens, no KV kept "
            f"between rounds; median of {args.rounds} alternating rounds, load average {load:.1f}.\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(f"- {r}" for r in ratios))
    _report.write_section("adapters", "LoRA variants on one shared base (bench/adapters.py)", body)


if __name__ == "__main__":
    main()
