"""What a profile will ask of each role: planned LLM calls and tokens, and their cost at list prices.

An estimate, not a bill: it counts the calls the stages make from the params (tasks, pairs, combos,
positions, models, turns) and multiplies by per-call token sizes measured on this project's own
prompts (constants below). Episodes are assumed to run to `max_turns` (an upper bound: SOTOPIA
episodes often end earlier when an agent leaves).
"""

from __future__ import annotations

import pandas as pd

from ..config import StudyConfig
from ..data.human_eval import load_human_eval
from ..data.sotopia import SotopiaData
from ..evaluate.benchmark import select_combos
from ..evaluate.human_eval import select_released
from ..llm.pricing import find_price, price_table
from ..sim.human_eval import released_episodes

# Tokens per call, measured on the project's prompts with SOTOPIA profiles (SmolLM2 tokenizer; OpenAI's
# is within ~10%): the agent prompt is ~700 tokens plus ~35 per turn of history; an action ~45 tokens.
AGENT_PROMPT, AGENT_PER_TURN, AGENT_REPLY = 700, 35, 45
JUDGE_PROMPT, JUDGE_PER_TURN = 950, 35
TASKGEN_PROMPT, TASKGEN_REPLY = 350, 180
COMPLIANCE_PROMPT, COMPLIANCE_REPLY = 300, 60
# SOTOPIA-pi's released human-evaluation transcripts, whole: ~1,270 judge prompt tokens each (15,223
# over the smoke profile's 12 released episodes).
RELEASED_JUDGE_PROMPT = 1270


def _episode_turns(turns: int) -> tuple[int, int]:
    """(calls, prompt tokens) of one agent position over an episode of `turns` turns."""
    mine = range(0, turns, 2)
    return len(mine), sum(AGENT_PROMPT + AGENT_PER_TURN * t for t in mine)


# Uncapped reasoning (the paper's judge): about 80 tokens per dimension, an assumption (GPT-4's
# reasoning length cannot be measured here) that keeps the estimate an upper bound in practice.
UNCAPPED_REASONING_TOKENS = 80


def _judge_reply(cfg: StudyConfig) -> int:
    cap = cfg.judge.reasoning_max_chars
    return 14 * ((cap // 4 if cap is not None else UNCAPPED_REASONING_TOKENS) + 20)


def _released_to_judge(cfg: StudyConfig, data: SotopiaData) -> int:
    """How many of SOTOPIA-pi's released human-evaluation episodes 05 has the judge rate."""
    return len(select_released(released_episodes(load_human_eval(), data), cfg.human_eval))


def plan_calls(cfg: StudyConfig, data: SotopiaData) -> pd.DataFrame:
    """One row per (stage, role): calls, prompt and completion tokens."""
    rules = cfg.simulation.rules
    turns = rules.max_turns + (1 if rules.ending == "official" else 0)  # official: the limit is exceeded
    calls_per_seat, prompt_per_seat = _episode_turns(turns)
    rows = []

    def add(stage: str, role: str, calls: int, prompt: int, completion: int) -> None:
        rows.append({"stage": stage, "role": role, "calls": calls, "prompt_tokens": prompt,
                     "completion_tokens": completion})

    rounds = 2 if cfg.collect.bc_sr else 1
    gen = round(cfg.generate.n_tasks * cfg.generate.oversample) * rounds
    add("01_generate", "task_generator", gen, gen * TASKGEN_PROMPT, gen * TASKGEN_REPLY)
    episodes = cfg.generate.n_tasks * cfg.generate.pairs_per_task
    judge_prompt = JUDGE_PROMPT + JUDGE_PER_TURN * turns
    for source, role in (("bc", "expert"), ("sr", "policy")):
        if source in cfg.collect.sources:
            add("02_collect", role, 2 * calls_per_seat * episodes, 2 * prompt_per_seat * episodes,
                2 * calls_per_seat * episodes * AGENT_REPLY)
            add("02_collect", "judge", episodes, episodes * judge_prompt, episodes * _judge_reply(cfg))
    if cfg.collect.bc_sr:
        add("04_train", "policy", 2 * calls_per_seat * episodes, 2 * prompt_per_seat * episodes,
            2 * calls_per_seat * episodes * AGENT_REPLY)
        add("04_train", "judge", episodes, episodes * judge_prompt, episodes * _judge_reply(cfg))
    ev = cfg.evaluate
    sets = dict(ev.task_sets) | ({"safety": ev.safety_combos} if ev.safety else {})
    combos = sum(len(select_combos(data, s, n, ev.seed)) for s, n in sets.items())
    n_eval = combos * (2 if ev.both_positions else 1)
    for model in ev.models:
        role = "expert" if model == "expert" else "policy"
        add("05_evaluate", role, calls_per_seat * n_eval, prompt_per_seat * n_eval,
            calls_per_seat * n_eval * AGENT_REPLY)
        add("05_evaluate", "partner", calls_per_seat * n_eval, prompt_per_seat * n_eval,
            calls_per_seat * n_eval * AGENT_REPLY)
        add("05_evaluate", "judge", n_eval, n_eval * judge_prompt, n_eval * _judge_reply(cfg))
    if ev.safety:
        n_safe = len(select_combos(data, "safety", ev.safety_combos, ev.seed)) * (2 if ev.both_positions else 1)
        k = len(ev.models) * n_safe
        add("05_evaluate", "judge", k, k * COMPLIANCE_PROMPT, k * COMPLIANCE_REPLY)
    n_rel = _released_to_judge(cfg, data)
    add("05_evaluate", "judge", n_rel, n_rel * RELEASED_JUDGE_PROMPT, n_rel * _judge_reply(cfg))
    df = pd.DataFrame(rows)
    return df.groupby(["stage", "role"], as_index=False).sum()


def cost_table(cfg: StudyConfig, data: SotopiaData) -> pd.DataFrame:
    """plan_calls with each role's model and its USD cost (0 for local models, which cost GPU time)."""
    df = plan_calls(cfg, data)
    models, costs = [], []
    for role, prompt, completion in zip(df["role"], df["prompt_tokens"], df["completion_tokens"], strict=True):
        spec = getattr(cfg.models, role)
        price = (find_price(spec.model, price_table(spec.options.get("prices")))
                 if spec.backend == "openai" else None)
        models.append(spec.label)
        costs.append(round(price.cost(prompt, completion), 2) if price else 0.0)
    return df.assign(model=models, cost_usd=costs)
