"""The hf backend's engine against the engines a researcher would otherwise use, on the same workloads.

A workload is bench/sim_throughput.py's: 16 SOTOPIA episodes (16 of SOTOPIA-all's setups, evenly
spaced from offset S for a workload seed S, episode seeds S..S+15, cap 6 turns, agents sampling at
temperature 1.0 under the action schema, arguments up to 300 characters, 160 tokens per turn), played
by the episode runner with the response cache off:

  engine        the runner on the hf backend as the pipeline runs it (the engine in llm/engine/)
  transformers  the same episodes with model.generate + xgrammar's own HF logits processor
                (xgrammar.contrib.hf.LogitsProcessor), one request at a time: what a researcher would
                write. Same model, same dtype, same sampling (temperature, top_p; top_k off), a seed per
                request; a reply that does not parse is a failed request (the runner retries once)
  llama.cpp     a llama-server given by --llama-server URL (e.g. http://127.0.0.1:8080/v1), driven
                through the project's openai backend (16 concurrent requests, response_format
                json_schema); see docs/performance.md for building one
  plain         (--plain) the hf backend's own fallback path (hf_plain.py), for reference

Each prints turns/s, generated tokens/s, valid replies of all requests and failed episodes; then
`engine / transformers: ratio R1` (goal >= 5) and `engine / llama.cpp: ratio R2` (goal >= 2).

One workload of 16 episodes is too small a sample to decide a ratio near its goal: at temperature
1.0 each engine samples its own conversations (bfloat16 kernels differ in rounding, so the same seed
soon draws other tokens), and how many turns they last and how long their replies are moves one
workload's ratio a long way (the per-workload lines show how far). So the comparison plays several workloads (`--seeds`,
default 0 1 2: other setups, other seeds), every engine on each, and the ratios are pooled: all
turns (or tokens) an engine played over all the seconds it took. Per-workload ratios are printed
too. Within a workload the engine plays first and again last, and its two runs are averaged, so a
load that drifts on a shared machine does not favour either side. Model loading and grammar
compilation are outside every timed run, and every run loads its engine afresh (no KV kept from an
earlier run).

Each engine runs as its user would run it: torch's OpenMP wait policy as the environment sets it
(`make all` leaves it unset, and so does this), llama-server with its own defaults. A llama-server keeps
the prompts it has seen (its prompt cache), so give each comparison a freshly started one: the
workloads of one run play different setups, but a second run on the same server would find its
first prompts already computed. Under `make bench` (BENCH_DOCS set) the comparison is written into
docs/performance.md.

    python bench/engines.py                                   # ~20 minutes on an idle 2-core CPU
    python bench/engines.py --llama-server http://127.0.0.1:8080/v1   # or LLAMA_SERVER=... make bench
    python bench/engines.py --episodes 4 --max-turns 4 --seeds 0 --only engine transformers
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _report
import torch
from _episodes import add_workload_args, warm_up, workload_specs

from sotopia_pi_lib.llm import LLM, LLMRequest, LLMResponse, ModelSpec, SamplingParams
from sotopia_pi_lib.llm.hf import HFModel
from sotopia_pi_lib.llm.json_output import derive_seed
from sotopia_pi_lib.llm.registry import build_llm
from sotopia_pi_lib.llm.schema import parse_json_output
from sotopia_pi_lib.llm.usage import MeteredLLM
from sotopia_pi_lib.sim import RuleConfig, RunConfig, run_episodes

ENGINES = ("engine", "transformers", "llama.cpp", "plain")
GOALS = {"transformers": 5.0, "llama.cpp": 2.0}
BUILD_HINT = "build one as docs/performance.md describes and pass --llama-server http://HOST:PORT/v1"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_args(p)
    p.add_argument("--dtype", default="auto", help="hf dtype of the engine and of transformers' run")
    p.add_argument(
        "--llama-server", metavar="URL", default=os.environ.get("LLAMA_SERVER") or None,
        help="an OpenAI-compatible llama.cpp server (…/v1); default: $LLAMA_SERVER (make bench LLAMA_SERVER=URL)",
    )
    p.add_argument("--llama-model", default="smollm2", help="the model name the llama-server answers to")
    p.add_argument("--plain", action="store_true", help="also run the hf backend's plain (fallback) path")
    p.add_argument("--only", nargs="+", choices=ENGINES, help="run only these")
    p.add_argument(
        "--seeds", nargs="+", type=int, default=[0, 1, 2],
        help="workload seeds: each plays its own setups (from offset S) with episode seeds S..S+15 (default 0 1 2)",
    )  # fmt: skip
    p.add_argument("--json", help="also write the numbers to this file")
    return p.parse_args()


class GenerateOneByOne(LLM):
    """transformers' generate with xgrammar's HF logits processor, one request at a time."""

    def __init__(self, model_path: str, dtype: Any) -> None:
        import xgrammar as xgr
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec = ModelSpec(backend="hf", model="embedded", options={"engine": "off"})
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.net = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).eval()
        info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.net.config.vocab_size)
        self.compiler = xgr.GrammarCompiler(info)
        self._grammars: dict[str, Any] = {}

    def identity(self) -> dict[str, Any]:
        return {"backend": "transformers-generate", "dtype": str(self.net.dtype)}

    def grammar(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = self.compiler.compile_json_schema(key)
        return self._grammars[key]

    @torch.inference_mode()
    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        from xgrammar.contrib.hf import LogitsProcessor

        out = []
        for request in requests:
            t0 = time.perf_counter()
            ids = self.tokenizer.apply_chat_template(
                [m.model_dump() for m in request.messages], add_generation_prompt=True, return_tensors="pt",
                return_dict=True,
            )["input_ids"]  # fmt: skip
            s = request.sampling
            torch.manual_seed(derive_seed(request.seed, request.sample_index))
            processors = [LogitsProcessor(self.grammar(request.json_schema))] if request.json_schema else []
            sequences = self.net.generate(
                ids, max_new_tokens=s.max_tokens, do_sample=s.temperature > 0, temperature=s.temperature or None,
                top_p=s.top_p, top_k=0, logits_processor=processors, pad_token_id=self.tokenizer.eos_token_id,
            )  # fmt: skip
            reply = sequences[0, ids.shape[1] :]
            text = self.tokenizer.decode(reply, skip_special_tokens=True)
            ended = bool(reply.numel()) and int(reply[-1]) == self.tokenizer.eos_token_id
            response = LLMResponse(
                text=text, finish_reason="stop" if ended else "length", prompt_tokens=ids.shape[1],
                completion_tokens=int(reply.numel()), latency_s=time.perf_counter() - t0,
            )  # fmt: skip
            if request.json_schema is not None:
                parsed, problem = parse_json_output(text, request.json_schema)
                update = {"parsed": parsed} if problem is None else {"finish_reason": "error", "error": problem}
                response = response.model_copy(update=update)
            out.append(response)
        return out


def build(name: str, args: argparse.Namespace) -> LLM:
    """The engine under test, loaded and with the action grammar compiled (outside the timed run)."""
    if name in ("engine", "plain"):
        options = {"dtype": args.dtype, "kv_cache_bytes": 4 << 30, "engine": "auto" if name == "engine" else "off"}
        llm = build_llm(ModelSpec(backend="hf", model="embedded", options=options), cache=None)
    elif name == "transformers":
        probe = HFModel(ModelSpec(backend="hf", model="embedded", options={"dtype": args.dtype}))
        dtype = getattr(torch, probe.identity()["dtype"])  # what `auto` resolves to for the engine
        llm = GenerateOneByOne(probe.model_path, dtype)
    else:
        options = {"base_url": args.llama_server, "max_concurrency": 16, "structured": "json_schema"}
        llm = build_llm(ModelSpec(backend="openai", model=args.llama_model, options=options), cache=None)
    warm_up(llm, args.max_argument_chars)
    inner = getattr(llm, "inner", llm)
    if name == "engine" and getattr(inner, "path", None) != "engine":
        raise SystemExit(f"the hf backend did not start its engine here: {inner.plain_reason}")
    return llm


def play(name: str, specs: list, args: argparse.Namespace) -> dict[str, Any]:
    llm = build(name, args)
    metered = MeteredLLM(llm, name)
    config = RunConfig(
        rules=RuleConfig(max_turns=args.max_turns),
        sampling=SamplingParams(temperature=1.0, max_tokens=args.max_tokens),
        max_argument_chars=args.max_argument_chars, max_live_episodes=len(specs),
    )  # fmt: skip
    print(f"\n== {name}", flush=True)
    t0 = time.perf_counter()
    result = run_episodes(specs, {"m": metered}, config)
    wall = time.perf_counter() - t0
    llm.close()
    s, u = result.summary, metered.usage
    return {
        "turns": s.turns, "seconds": round(wall, 1), "turns_per_s": round(s.turns / wall, 3),
        "completion_tokens": s.completion_tokens, "tokens_per_s": round(s.completion_tokens / wall, 1),
        "requests": u.requests, "valid_replies": u.requests - u.failed, "failed_episodes": s.failed,
        "episodes": s.completed, "end_reasons": s.end_reasons,
    }  # fmt: skip


def pooled(runs: list[dict[str, Any]]) -> tuple[float, float]:
    """(turns/s, tokens/s) of runs taken together: all turns (tokens) over all seconds. An engine
    that played a workload twice counts that workload once, at the mean of its two times."""
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        by_seed.setdefault(r["seed"], []).append(r)
    turns = tokens = seconds = 0.0
    for same in by_seed.values():
        turns += sum(r["turns"] for r in same) / len(same)
        tokens += sum(r["completion_tokens"] for r in same) / len(same)
        seconds += sum(r["seconds"] for r in same) / len(same)
    return turns / seconds, tokens / seconds


def ratio_lines(runs: list[dict[str, Any]], args: argparse.Namespace, ratios: dict[str, float]) -> list[str]:
    """Per-workload ratios, then the pooled ones (the goals apply to those)."""
    lines = []
    engine = [r for r in runs if r["engine"] == "engine"]
    for other, label in (("transformers", "R1"), ("llama.cpp", "R2")):
        theirs = [r for r in runs if r["engine"] == other]
        if engine and theirs:
            per_seed = []
            for seed in args.seeds:
                mine = pooled([r for r in engine if r["seed"] == seed])[0]
                per_seed.append(f"{mine / pooled([r for r in theirs if r['seed'] == seed])[0]:.2f} (seed {seed})")
            (turns_e, tokens_e), (turns_o, tokens_o) = pooled(engine), pooled(theirs)
            r, by_tokens = turns_e / turns_o, tokens_e / tokens_o
            ratios[label] = round(r, 2)
            verdict = "met" if r >= GOALS[other] else "missed"
            lines.append(f"engine / {other} per workload, in turns/s: {', '.join(per_seed)}")
            lines.append(f"engine / {other}: ratio {label} = {r:.2f} over {len(args.seeds)} workloads "
                         f"(goal >= {GOALS[other]:g}: {verdict}); in generated tokens/s {by_tokens:.2f}")
        elif other == "llama.cpp" and not args.llama_server:
            lines.append(f"engine / llama.cpp: ratio R2 skipped (no --llama-server given; {BUILD_HINT})")
    return lines


def describe(args: argparse.Namespace) -> str:
    """What each engine was: the hf engine's dtype, and the llama.cpp server's build and model."""
    dtype = HFModel(ModelSpec(backend="hf", model="embedded", options={"dtype": args.dtype})).identity()["dtype"]
    policy = os.environ.get("OMP_WAIT_POLICY") or "unset"
    text = f"engine and transformers run the embedded model in {dtype} (OMP_WAIT_POLICY {policy})"
    if args.llama_server:
        import httpx

        try:
            props = httpx.get(args.llama_server.removesuffix("/").removesuffix("/v1") + "/props", timeout=10).json()
            model = Path(str(props.get("model_path", "?"))).name
            text += f"; llama.cpp {props.get('build_info', '?')} serves {model}"
        except (httpx.HTTPError, ValueError):
            text += "; llama.cpp (its /props did not answer)"
    return text


def table(runs: list[dict[str, Any]]) -> str:
    rows = ["| run | seed | engine | turns | seconds | turns/s | tokens/s | valid replies / requests | failed episodes "
            "| load after |",
            "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        rows.append(f"| {r['order']} | {r['seed']} | {r['label']} | {r['turns']} | {r['seconds']} | "
                    f"{r['turns_per_s']:.3f} | {r['tokens_per_s']} | {r['valid_replies']} / {r['requests']} | "
                    f"{r['failed_episodes']} | {r['load']} |")
    return "\n".join(rows)


def main() -> None:
    args = parse_args()
    wanted = args.only or [n for n in ENGINES if n != "plain" or args.plain]
    if "llama.cpp" in wanted and not args.llama_server:
        wanted.remove("llama.cpp")
    order = [*wanted, "engine"] if "engine" in wanted and len(wanted) > 1 else wanted  # engine first and last
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        specs = workload_specs(argparse.Namespace(**{**vars(args), "seed": seed}), "m", "engines")
        for name in order:
            again = any(r["engine"] == name and r["seed"] == seed for r in runs)
            result = play(name, specs, args)
            runs.append(result | {"engine": name, "label": f"{name} (again)" if again else name, "seed": seed,
                                  "load": round(os.getloadavg()[0], 1), "order": len(runs) + 1})
    load = os.getloadavg()[0]
    episodes = args.episodes * len(args.seeds)
    print(f"\n{len(args.seeds)} workloads of {args.episodes} episodes, cap {args.max_turns} turns, embedded model, "
          f"response cache off, load {load:.1f}")
    print(table(runs))
    ratios: dict[str, float] = {}
    lines = ratio_lines(runs, args, ratios)
    print("\n".join(lines))
    body = (f"{len(args.seeds)} workloads (seeds {', '.join(map(str, args.seeds))}) of {args.episodes} SOTOPIA "
            f"episodes each, {episodes} in all (cap {args.max_turns} turns, temperature 1.0, action schema, "
            f"{args.max_tokens} tokens per turn), response cache off; load average {load:.1f} at the end. "
            f"Engines: {describe(args)}. Each engine samples its own conversations, so turn counts and reply "
            "lengths differ between engines; the ratios pool all workloads (bench/engines.py says why).\n\n"
            + table(runs) + "\n\n" + "\n".join(f"- {line}" for line in lines))
    _report.write_section("engines", "Engines on the simulation workload (bench/engines.py)", body)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "ratios": ratios, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
