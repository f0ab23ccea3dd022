"""Linear weights packed for oneDNN (llm/engine/cpu_linear.py) against plain nn.Linear, side by side.

Two copies of the embedded model in one process, both loaded as the hf backend loads them on a CPU
(packed attention), one with `pack_weights: false`, timed in alternating rounds so a noisy
machine hits both alike: one decode step of 1, 5 and 16 rows over a cached context (the KV buffer
of engine/decode.py), and one 400-token prompt. Prints the median of each over the rounds
and plain / packed. Also checks the two give bit-identical logits in bfloat16.

    python bench/cpu_linear.py
    python bench/cpu_linear.py --dtype float32 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sotopia_pi_lib.data import ensure_embedded_model
from sotopia_pi_lib.llm import hf_load
from sotopia_pi_lib.llm.engine import prepare
from sotopia_pi_lib.llm.engine.batch_kv import BatchKV
from sotopia_pi_lib.llm.engine.cpu_linear import can_pack
from sotopia_pi_lib.llm.hf_load import HFOptions

SHAPES = [(1, 900), (5, 900), (16, 700)]  # decode rows, cached tokens per row


def load(dtype: str, pack: bool):
    """As the hf backend's engine runs it on this CPU, with or without packed weights."""
    net = hf_load.load(str(ensure_embedded_model()), {}, HFOptions(dtype=dtype)).net
    prepare(net, pack_weights=pack)
    return net


@torch.inference_mode()
def step_ms(net, rows: int, cached: int, reps: int = 8) -> float:
    cfg = net.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    batch = BatchKV(cfg.num_hidden_layers, cfg.num_key_value_heads, head_dim, net.dtype, net.device, rows)
    g = torch.Generator().manual_seed(0)
    for r in range(rows):
        shape = (cfg.num_hidden_layers, 2, cfg.num_key_value_heads, cached - 37 * r, head_dim)
        batch.add((torch.randn(shape, generator=g) * 0.1).to(net.dtype))
    times = []
    for _ in range(reps):
        batch.step_inputs([1] * rows)
        t0 = time.perf_counter()
        net(input_ids=torch.randint(0, 1000, (rows, 1), generator=g), position_ids=batch.positions(),
            attention_mask=batch.step_mask(), cache=batch.as_cache(), use_cache=True, logits_to_keep=1)  # fmt: skip
        times.append(time.perf_counter() - t0)
        batch.advance()
    return statistics.median(times[2:]) * 1000


@torch.inference_mode()
def prompt_ms(net, tokens: int = 400) -> float:
    ids = torch.randint(0, 1000, (1, tokens), generator=torch.Generator().manual_seed(1))
    net(input_ids=ids, logits_to_keep=1)
    t0 = time.perf_counter()
    net(input_ids=ids, logits_to_keep=1)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)
    if not can_pack(dtype):  # not an error: the hf backend then keeps plain weights, as compared here
        print(f"oneDNN cannot pack {args.dtype} weights with this CPU and torch; the hf backend keeps plain ones")
        return
    nets = {"plain": load(args.dtype, False), "packed": load(args.dtype, True)}
    ids = torch.randint(0, 40_000, (2, 64), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        plain, packed = (nets[k](input_ids=ids).logits for k in ("plain", "packed"))
    same = torch.equal(plain, packed)
    print(f"{args.dtype}: logits bit-identical: {same} (max difference {(plain - packed).abs().max().item():.2g})")
    cases = [f"step {r} rows x {c}" for r, c in SHAPES] + ["prompt 400 tokens"]
    times: dict[str, dict[str, list[float]]] = {k: {c: [] for c in cases} for k in nets}
    for _ in range(args.rounds):
        for name, net in nets.items():
            for (rows, cached), case in zip(SHAPES, cases, strict=False):
                times[name][case].append(step_ms(net, rows, cached))
            times[name][cases[-1]].append(prompt_ms(net))
    print(f"median of {args.rounds} alternating rounds, ms")
    for case in cases:
        a, b = (statistics.median(times[k][case]) for k in ("plain", "packed"))
        print(f"  {case:22s} plain {a:7.1f}  packed {b:7.1f}  plain/packed {a / b:.2f}x")


if __name__ == "__main__":
    main()
