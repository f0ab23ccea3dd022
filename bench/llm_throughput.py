"""Throughput of the hf backend with the embedded model and a JSON schema (issue 3), in three lines.

1. Generated tokens/s under SOTOPIA's action schema with max_batch_size 1, 4, 16, 32 (each size runs
   max(4, 2 x size) distinct requests, so continuous batching keeps the batch full), and the ratio of
   the best to batch 1. Agents sample at temperature 1.0 as in the paper; every reply must parse.
2. A fully cached re-run of the largest workload through the response cache, with a fresh model
   object that never loads weights, against the uncached run.
3. Session KV reuse: 16 agents asked twice, the second prompt extending the first by one turn; prefill
   tokens computed vs reused and the time of the second call with and without reuse (greedy, so in
   float32 the replies are identical; in bfloat16 rounding may flip a token of a few).

    python bench/llm_throughput.py                 # about 2-3 minutes on an idle 2-core CPU
    python bench/llm_throughput.py --sizes 1 8 --json out.json

Timings on a shared machine are noisy: the load average is printed with the results.
"""

from __future__ import annotations

import os

# Before torch loads: with other processes on the cores, OpenMP's default spin-waiting threads compete
# with them for the CPU and make torch several times slower; passive waiting yields the core.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import tempfile
import time
from pathlib import Path

from sotopia_pi_lib.data import load_sotopia
from sotopia_pi_lib.llm import LLMRequest, LLMResponse, Message, ModelSpec, SamplingParams
from sotopia_pi_lib.llm.cache import ResponseCache
from sotopia_pi_lib.llm.hf import HFModel
from sotopia_pi_lib.llm.registry import CachedLLM
from sotopia_pi_lib.sim import ACTION_TYPES, action_schema

ACTION_SCHEMA = action_schema(ACTION_TYPES)
SYSTEM = "Role-play the character; reply with one action."


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 32])
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--sessions", type=int, default=16)
    p.add_argument(
        "--dtype", default="auto", help="hf dtype option (auto: bfloat16 on CPUs with native bf16, else float32)"
    )
    p.add_argument("--json", help="also write the numbers to this file")
    return p.parse_args()


def action_requests(
    n: int,
    history_turns: int = 0,
    max_tokens: int = 64,
    temperature: float = 1.0,
    offset: int = 0,
    chars: int = 120,
) -> list[LLMRequest]:
    """SOTOPIA-like agent prompts: scenario and own goal (cut to `chars` characters each; 120 gives
    about 90 prompt tokens, the scale of the issue's baseline), then optional history."""
    data = load_sotopia()
    combos = data.combos
    out = []
    for i in range(offset, offset + n):
        combo = combos[(i * 7) % len(combos)]
        env = data.environments[combo.env_id]
        me, other = (data.agents[a] for a in combo.agent_ids[:2])
        history = "".join(
            f'\nTurn {t}: {(me if t % 2 else other).first_name} said: "{(me if t % 2 else other).public_info[:90]}"'
            for t in range(history_turns)
        )
        user = (
            f"Scenario: {env.scenario[:chars]}\nYou are {me.first_name} {me.last_name}, {me.age}, "
            f"{me.occupation}. Your goal: {env.agent_goals[0][:chars]}\nYou are talking to {other.first_name}."
            f"{history}\nTurn {history_turns}: what do you do?"
        )
        out.append(
            LLMRequest(
                messages=(Message(role="system", content=SYSTEM), Message(role="user", content=user)),
                json_schema=ACTION_SCHEMA,
                sampling=SamplingParams(temperature=temperature, max_tokens=max_tokens),
                seed=i,
                session=f"bench/{i}",
            )
        )
    return out


def spec(**options: int | str) -> ModelSpec:
    return ModelSpec(backend="hf", model="embedded", options=options)


def model(**options: int | str) -> HFModel:
    """A fresh hf model; a first, untimed request (a prompt no timed request shares) loads the weights
    and compiles the schema."""
    m = HFModel(spec(**options))
    m.generate(action_requests(1, max_tokens=8, offset=1000))
    m.reset_stats()
    return m


def timed(llm: HFModel | CachedLLM, requests: list[LLMRequest]) -> tuple[float, list[LLMResponse]]:
    t0 = time.perf_counter()
    responses = llm.generate(requests)
    return time.perf_counter() - t0, responses


def throughput(sizes: list[int], max_tokens: int, cache_dir: Path, dtype: str) -> dict:
    rows = {}
    for size in sizes:
        m = model(max_batch_size=size, dtype=dtype)
        requests = action_requests(max(4, 2 * size), max_tokens=max_tokens)
        seconds, responses = timed(CachedLLM(m, ResponseCache(cache_dir / f"b{size}.sqlite")), requests)
        tokens = sum(r.completion_tokens for r in responses)
        s = m.stats
        rows[size] = {
            "requests": len(requests), "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "completion_tokens": tokens, "prompt_tokens": sum(r.prompt_tokens for r in responses),
            "parsed": sum(r.ok and r.parsed is not None for r in responses),
            "prefill_computed": s.prefill_tokens_computed, "prefill_reused": s.prefill_tokens_reused,
            "prefill_forwards": s.prefill_forwards, "prefill_s": round(s.prefill_s, 2), "decode_s": round(s.forward_s, 2),
            "grammar_s": round(s.grammar_s, 2), "sample_s": round(s.sample_s, 2), "steps": s.steps,
        }  # fmt: skip
        print(f"  batch {size:>2}: {rows[size]}", flush=True)
    return rows


def cached_rerun(size: int, max_tokens: int, cache_dir: Path, uncached_s: float, dtype: str) -> dict:
    fresh = HFModel(spec(max_batch_size=size, dtype=dtype))
    requests = action_requests(max(4, 2 * size), max_tokens=max_tokens)
    seconds, responses = timed(CachedLLM(fresh, ResponseCache(cache_dir / f"b{size}.sqlite")), requests)
    assert all(r.cached for r in responses) and not fresh.loaded, "the re-run should not touch the model"
    return {
        "uncached_s": uncached_s,
        "cached_s": round(seconds, 4),
        "speedup": round(uncached_s / seconds, 1),
    }


def session_reuse(n: int, max_tokens: int, dtype: str) -> dict:
    first = action_requests(n, history_turns=6, max_tokens=max_tokens, temperature=0.0, chars=400)
    second = action_requests(n, history_turns=7, max_tokens=max_tokens, temperature=0.0, chars=400)
    warm, cold = model(dtype=dtype), model(kv_cache_bytes=0, dtype=dtype)
    warm.generate(first)
    warm.reset_stats()
    reuse_s, with_reuse = timed(warm, second)
    fresh_s, without = timed(cold, second)
    s = warm.stats
    return {
        "sessions": n, "prefill_computed": s.prefill_tokens_computed, "prefill_reused": s.prefill_tokens_reused,
        "with_reuse_s": round(reuse_s, 2), "without_reuse_s": round(fresh_s, 2),
        "speedup": round(fresh_s / reuse_s, 2),
        "same_outputs": sum(a.text == b.text for a, b in zip(with_reuse, without, strict=True)),
    }  # fmt: skip


def main() -> None:
    args = parse_args()
    print(
        f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (timings are noisy when others "
        f"run); OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; dtype {args.dtype}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = throughput(args.sizes, args.max_tokens, Path(tmp), args.dtype)
        base, best = rows[args.sizes[0]]["tokens_per_s"], max(r["tokens_per_s"] for r in rows.values())
        best_size = max(rows, key=lambda k: rows[k]["tokens_per_s"])
        ratio = best / base
        per_size = ", ".join(f"b{k}={v['tokens_per_s']}" for k, v in rows.items())
        print(f"tokens/s with schema: {per_size}; best/batch-{args.sizes[0]} = {ratio:.1f}x (target >= 5x)")
        largest = args.sizes[-1]
        cached = cached_rerun(largest, args.max_tokens, Path(tmp), rows[largest]["seconds"], args.dtype)
        print(f"cached re-run of batch {largest}: {cached['uncached_s']} s -> {cached['cached_s']} s, "
              f"{cached['speedup']}x faster (target >= 50x), model never loaded")  # fmt: skip
    reuse = session_reuse(args.sessions, args.max_tokens, args.dtype)
    print(f"session reuse, {reuse['sessions']} agents asked again: prefill {reuse['prefill_computed']} tokens "
          f"computed, {reuse['prefill_reused']} reused; {reuse['without_reuse_s']} s -> {reuse['with_reuse_s']} s "
          f"({reuse['speedup']}x); identical greedy outputs {reuse['same_outputs']}/{reuse['sessions']} (float32 "
          f"gives all; in bfloat16 a reused and a recomputed prefix round differently)")  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"throughput": rows, "ratio": ratio, "best_size": best_size,
                                               "cached": cached, "session_reuse": reuse}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
