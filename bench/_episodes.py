"""The simulation workload bench/engines.py and bench/sim_throughput.py share, so their numbers are
comparable: the same episodes (every n-th scenario setup of SOTOPIA-all), the same turn cap, argument
length and token budget, and the same warm-up outside the timed runs. (Not a benchmark itself: the
Makefile skips bench/_*.py.)
"""

from __future__ import annotations

import argparse

from sotopia_pi_lib.data import load_sotopia
from sotopia_pi_lib.llm import LLM, LLMRequest, Message, SamplingParams
from sotopia_pi_lib.sim import ACTION_TYPES, EpisodeSpec, action_schema, make_specs, setups_for_task_set


def add_workload_args(p: argparse.ArgumentParser) -> None:
    """--episodes, --max-turns, --max-argument-chars, --max-tokens and --seed, with the shared defaults."""
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--max-turns", type=int, default=6, help="turn cap per episode (SOTOPIA: 20)")
    p.add_argument("--max-argument-chars", type=int, default=300)
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)


def workload_specs(args: argparse.Namespace, model: str, bench: str) -> list[EpisodeSpec]:
    """`args.episodes` episodes spread evenly over SOTOPIA-all's setups, both agents played by `model`.

    The seed also shifts where the spread starts, so workloads of different seeds play different
    setups: a server that keeps prompts between requests (llama-server's prompt cache) must not find a
    later workload's first prompts already computed by an earlier one."""
    setups = setups_for_task_set(load_sotopia(), "sotopia_all")
    step = max(1, len(setups) // args.episodes)
    setups = setups[args.seed % step :: step][: args.episodes]
    return make_specs(setups, (model, model), seed=args.seed, tags={"bench": bench})


def warm_up(llm: LLM, max_argument_chars: int) -> None:
    """Load the weights and compile the action grammar, so neither lands in a timed run."""
    warm = LLMRequest(
        messages=(Message(role="user", content="Hi"),), sampling=SamplingParams(max_tokens=48),
        json_schema=action_schema(ACTION_TYPES, max_argument_chars),
    )  # fmt: skip
    llm.generate([warm])
