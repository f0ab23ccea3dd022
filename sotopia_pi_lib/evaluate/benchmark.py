"""Benchmark runs (SOTOPIA-pi, section 5): each model plays SOTOPIA tasks against the partner model.

The evaluated model plays both agent positions (once as agent 0 against the partner, once as agent 1),
so first-mover advantage cancels out. Episodes carry tags naming the evaluated model, its position
and the task set; analysis reads the evaluated agent's scores from its position.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..data.profiles import EnvAgentCombo
from ..data.sotopia import SotopiaData
from ..errors import ConfigError
from ..judge.rate import JudgeConfig, judge_into_stores
from ..judge.ratings import EpisodeRating, RatingStore
from ..llm.base import LLM
from ..llm.keys import model_key
from ..llm.types import ModelSpec
from ..sim.episode import EpisodeRecord
from ..sim.episode_store import RoutedStore
from ..sim.pairing import setup_for_combo
from ..sim.runner import EpisodeSpec, RunConfig, RunSummary, episode_ids, run_episodes
from ..strict import StrictModel
from .safety import safety_combos

TASK_SETS = ("sotopia_all", "sotopia_hard", "safety")
EvalModel = Literal["base", "sr", "bc", "bc_sr", "expert"]


class EvaluateConfig(StrictModel):
    """Benchmark runs (the `evaluate` block of a params file): each model against the partner, in both
    agent positions."""

    models: tuple[EvalModel, ...] = ("base", "sr", "bc", "bc_sr", "expert")
    task_sets: dict[Literal["sotopia_all", "sotopia_hard"], int | None] = Field(
        default_factory=lambda: {"sotopia_all": None, "sotopia_hard": None},
        description="task set -> number of combos (a fixed, seeded subset), None = all")
    both_positions: bool = True
    safety: bool = True
    safety_combos: int | None = Field(None, ge=1, description="subset of the 35 safety combos")
    seed: int = 0


def select_combos(data: SotopiaData, task_set: str, n: int | None, seed: int) -> list[EnvAgentCombo]:
    """The task set's combos, or a fixed seeded subset of `n` (sorted by combo id before sampling, so
    the subset depends only on the seed and the data)."""
    if task_set == "safety":
        combos = safety_combos(data)
    elif task_set in ("sotopia_all", "sotopia_hard"):
        combos = data.task_set(task_set)
    else:
        raise ConfigError(f"unknown task set {task_set!r}; known: {', '.join(TASK_SETS)}")
    combos = sorted(combos, key=lambda c: c.combo_id)
    if n is None or n >= len(combos):
        return combos
    return sorted(random.Random(f"{seed}/{task_set}").sample(combos, n), key=lambda c: c.combo_id)


def eval_specs(combos: Sequence[EnvAgentCombo], data: SotopiaData, model: str, partner: str,
               task_set: str, both_positions: bool, seed: int) -> list[EpisodeSpec]:
    specs = []
    positions = (0, 1) if both_positions else (0,)
    for i, combo in enumerate(combos):
        setup = setup_for_combo(combo, data)
        for pos in positions:
            models = (model, partner) if pos == 0 else (partner, model)
            tags = {"eval_model": model.split("@")[0], "eval_position": str(pos), "task_set": task_set}
            specs.append(EpisodeSpec(setup=setup, models=models, seed=seed * 10_007 + i, tags=tags))
    return specs


class BenchmarkRun(BaseModel):
    model: str
    task_set: str
    episodes: list[EpisodeRecord]
    ratings: list[EpisodeRating]


class BenchmarkPlan(BaseModel):
    """One evaluated model on one task set, and the files its episodes and ratings go to."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    llm: LLM
    task_set: str
    combos: list[EnvAgentCombo]
    episodes_path: Path
    ratings_path: Path


def run_benchmarks(
    plans: Sequence[BenchmarkPlan],
    partner: LLM,
    judge: LLM,
    data: SotopiaData,
    *,
    sim: RunConfig,
    judging: JudgeConfig,
    evaluate: EvaluateConfig,
    reformatter: LLM | None = None,
) -> tuple[list[BenchmarkRun], RunSummary]:
    """Play every plan against the partner in ONE batched run (one backend batch per model per step),
    each (model, task set) into its own files, then judge every new episode in one batch. Resumable.
    Of `evaluate`, the positions and the seed apply (the plans already hold the models and combos).
    `reformatter` rewrites unparseable output in the sotopia style (sim.official)."""
    partner_key = model_key("partner", partner)
    models: dict[str, LLM] = {partner_key: partner}
    specs, files, keys = [], {}, {}
    for p in plans:
        key = keys.setdefault(p.name, model_key(p.name, p.llm))
        models[key] = p.llm
        specs += eval_specs(p.combos, data, key, partner_key, p.task_set, evaluate.both_positions, evaluate.seed)
        files[(p.name, p.task_set)] = p.episodes_path
    store = RoutedStore(files, ("eval_model", "task_set"))
    wanted: dict[tuple[str, ...], set[str]] = {key: set() for key in files}
    for spec, eid in zip(specs, episode_ids(specs, models, sim, reformatter), strict=True):
        wanted[(spec.tags["eval_model"], spec.tags["task_set"])].add(eid)
    for key, ids in wanted.items():  # episodes of other settings move aside: each file holds this run's only
        store.stores[key].retain(ids)
    result = run_episodes(specs, models, sim, store, reformatter=reformatter)
    groups = []
    for p in plans:
        ids = wanted[(p.name, p.task_set)]
        groups.append(([r for r in store.stores[(p.name, p.task_set)].records() if r.episode_id in ids],
                       RatingStore(p.ratings_path)))
    temperature = judging.sampling_temperature
    rated = judge_into_stores(groups, judge, agents=data.agents, samples=judging.samples, temperature=temperature,
                              reasoning_max_chars=judging.reasoning_max_chars, reformatter=reformatter, retain=True)
    runs = [BenchmarkRun(model=p.name, task_set=p.task_set, episodes=g[0], ratings=r)
            for p, g, r in zip(plans, groups, rated, strict=True)]
    return runs, result.summary


def adapter_spec(policy: ModelSpec, adapter_dir: Path) -> ModelSpec:
    """The policy with a trained LoRA adapter (what 04 wrote) on top."""
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ConfigError(f"no trained adapter at {adapter_dir}: run notebook 04 (training) first")
    return policy.model_copy(update={"adapter": str(adapter_dir)})
