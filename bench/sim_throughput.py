"""Simulation throughput: the naive loop against the batched runner, same episodes, same model.

naive   one episode at a time, each turn a fresh generate() call on the full prompt (no batching,
        no session hint, the hf KV store off so no prefix of an earlier call is reused either, and
        forced JSON text decoded one token per step)
batched the runner's default: every live episode's next turn in one call, each agent's KV cache
        kept across turns (session hint), forced JSON text fed at once
sotopia the sotopia prompt style: the official package's agents and environment in their worker
        process, each turn an HTTP request to the project's server, which micro-batches concurrent
        episodes' requests into one generate() call (session hints from the route header); decoding
        under the package's action schema (`json_schema`, as the ci and smoke profiles run it), so the
        135M model's turns parse as the project style's do
`--naive-jump` gives the naive loop the jump-forward too, to separate its share of the speed-up.
Both run with the response cache off, so every turn is really generated. Set-up is outside both timed
runs: loading the weights and compiling the action grammar (xgrammar; compiled once per model and
schema, so it would add the same constant to both). Also prints
episode lengths and action-type counts, so degenerate episodes (all `none`, instant leaves) show.
Both runs sample the same episodes with the same seeds, but in bfloat16 a reply depends slightly on
its batch-mates, so the sampled episodes drift apart (turn counts and lengths differ); hence the
speed-up is printed in generated tokens/s too. `--dtype float32 --temperature 0` plays (nearly) the
same episodes in both runs.

    python bench/sim_throughput.py                      # 16 episodes, 6 turns cap
    python bench/sim_throughput.py --max-turns 20 --only batched
    python bench/sim_throughput.py --only batched sotopia   # the sotopia style's ratio line only
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from _episodes import add_workload_args, warm_up, workload_specs

from sotopia_pi_lib.llm import ModelSpec, SamplingParams
from sotopia_pi_lib.llm.registry import build_llm
from sotopia_pi_lib.sim import EpisodeRecord, RuleConfig, RunConfig, run_episodes


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_args(p)
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="0: greedy (same episodes whatever the batching, in float32)",
    )
    p.add_argument("--only", nargs="+", choices=["naive", "batched", "sotopia"], default=None)
    p.add_argument("--kv-cache-gb", type=float, default=4.0, help="hf session KV cache bound")
    p.add_argument(
        "--dtype", default="auto", help="hf dtype of both runs (auto: bfloat16 where the CPU has it)"
    )
    p.add_argument("--naive-jump", action="store_true", help="naive loop also feeds forced text at once")
    p.add_argument("--no-pack", action="store_true", help="both runs keep plain nn.Linear weights on the CPU")
    p.add_argument("--json", help="also write the numbers to this file")
    return p.parse_args()


def describe(records: list[EpisodeRecord]) -> dict:
    """Lengths, endings and action mix, plus two signs of degenerate play."""
    turns = [t for r in records for t in r.turns]
    speak = [t.action.argument.strip() for t in turns if t.action.action_type == "speak"]
    repeats = sum(
        len(r.turns) - len({(t.action.action_type, t.action.argument) for t in r.turns}) for r in records
    )
    return {
        "episode_lengths": sorted(len(r.turns) for r in records),
        "end_reasons": dict(Counter(r.end_reason for r in records)),
        "action_types": dict(Counter(t.action.action_type for t in turns)),
        "mean_argument_chars": round(sum(len(t.action.argument) for t in turns) / max(1, len(turns)), 1),
        "empty_speak_turns": sum(not s for s in speak),
        "repeated_actions_within_episode": repeats,
        "mean_completion_tokens": round(sum(t.completion_tokens for t in turns) / max(1, len(turns)), 1),
    }


def build(
    kv_cache_bytes: int, max_argument_chars: int, jump_forward: bool = True, dtype: str = "auto", pack: bool = True
):
    options = {"kv_cache_bytes": kv_cache_bytes, "jump_forward": jump_forward, "dtype": dtype, "pack_weights": pack}
    llm = build_llm(ModelSpec(backend="hf", model="embedded", options=options), cache=None)
    warm_up(llm, max_argument_chars)
    return llm


def run(mode: str, specs, args) -> dict:
    # Batched: 16 episodes x 2 agents x ~1,000 tokens x 46 KB/token (fp32) is ~1.5 GB of session KV;
    # under the hf default bound (1 GiB) an LRU over sessions used round-robin evicts the next ones.
    naive = mode == "naive"
    llm = build(
        0 if naive else int(args.kv_cache_gb * (1 << 30)),
        args.max_argument_chars,
        jump_forward=not naive or args.naive_jump,
        dtype=args.dtype,
        pack=not args.no_pack,
    )
    config = RunConfig(
        prompts="sotopia" if mode == "sotopia" else "project",
        sotopia={"json_schema": True},
        rules=RuleConfig(max_turns=args.max_turns),
        sampling=SamplingParams(temperature=args.temperature, max_tokens=args.max_tokens),
        max_argument_chars=args.max_argument_chars,
        max_live_episodes=1 if mode == "naive" else len(specs),
        use_sessions=mode != "naive",
    )
    print(f"\n== {mode}: {config.max_live_episodes} episode(s) at a time, sessions {config.use_sessions}")
    engine = getattr(llm, "inner", llm)
    if hasattr(engine, "reset_stats"):
        engine.reset_stats()
    t0 = time.perf_counter()
    result = run_episodes(specs, {"embedded": llm}, config)
    wall = time.perf_counter() - t0
    s = result.summary
    stats = getattr(engine, "stats", None)
    llm.close()
    prefill = (
        {"prefill_computed": stats.prefill_tokens_computed, "prefill_reused": stats.prefill_tokens_reused,
         "decode_steps": stats.steps, "prefill_s": round(stats.prefill_s, 1), "prefill_forwards": stats.prefill_forwards,
         "forward_s": round(stats.forward_s, 1), "grammar_s": round(stats.grammar_s, 1), "sample_s": round(stats.sample_s, 1),
         "mean_rows": round(stats.step_rows / max(1, stats.steps), 1), "jumped_tokens": stats.jumped_tokens}
        if stats
        else {}
    )  # fmt: skip
    return {"turns": s.turns, "seconds": round(wall, 1), "turns_per_s": round(s.turns / wall, 3),
            "completion_tokens": s.completion_tokens, "tokens_per_s": round(s.completion_tokens / wall, 1),
            "failed": s.failed, **prefill, **describe(result.records)}  # fmt: skip


def main() -> None:
    args = parse_args()
    specs = workload_specs(args, "embedded", "sim_throughput")
    modes = args.only or ["naive", "batched", "sotopia"]
    results = {m: run(m, specs, args) for m in modes}
    print(f"\n{len(specs)} episodes, cap {args.max_turns} turns, embedded model, response cache off")
    for mode, r in results.items():
        print(f"{mode:8s} {r['turns']:4d} turns in {r['seconds']:7.1f} s = {r['turns_per_s']:.3f} turns/s "
              f"({r['completion_tokens']} tokens generated, {r['tokens_per_s']:.1f} tokens/s)")
        print(f"         lengths {r['episode_lengths']}  ends {r['end_reasons']}")
        if "prefill_computed" in r:
            print(f"         prefill tokens computed {r['prefill_computed']}, reused {r['prefill_reused']} "
                  f"({r['prefill_forwards']} forwards, {r['prefill_s']} s); {r['decode_steps']} decode steps "
                  f"(mean {r['mean_rows']} rows, {r['forward_s']} s; grammar {r['grammar_s']} s, sampling "
                  f"{r['sample_s']} s; {r['jumped_tokens']} forced tokens fed without a step)")  # fmt: skip
        print(f"         actions {r['action_types']}  mean argument {r['mean_argument_chars']} chars, "
              f"{r['mean_completion_tokens']} tokens/turn, {r['empty_speak_turns']} empty speak, "
              f"{r['repeated_actions_within_episode']} repeated actions")  # fmt: skip
    if "naive" in results and "batched" in results:
        ratio = results["batched"]["turns_per_s"] / results["naive"]["turns_per_s"]
        results["speedup"] = round(ratio, 2)
        by_tokens = results["batched"]["tokens_per_s"] / results["naive"]["tokens_per_s"]
        results["speedup_tokens"] = round(by_tokens, 2)
        print(f"speed-up batched / naive: {ratio:.2f}x in turns/s (target >= 4x), {by_tokens:.2f}x in generated "
              "tokens/s (sampled episodes differ between the runs, so their turn lengths do)")
    if "sotopia" in results and "batched" in results:
        ratio = results["sotopia"]["turns_per_s"] / results["batched"]["turns_per_s"]
        results["sotopia_ratio"] = round(ratio, 2)
        print(f"sotopia style / project runner turns/s: ratio {ratio:.2f} (target >= 0.5; the episodes "
              "differ: other prompts, and the package's own ending rule)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results | {"args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
