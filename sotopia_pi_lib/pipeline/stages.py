"""The study's stages as library calls: what each notebook runs, in the order the paper describes.

Each function reads the files of earlier stages from the run folder and writes its own, so any
notebook can be re-run alone; the models come from the stage context (cached, metered per role).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict

from ..analysis.annotation import build_packet, load_packet, write_packet
from ..analysis.human_eval import RELEASED_CSVS
from ..data.human_eval import load_human_eval
from ..data.mmlu import load_mmlu, load_mmlu_dev
from ..errors import ConfigError, DataError
from ..evaluate.benchmark import BenchmarkPlan, BenchmarkRun, adapter_spec, run_benchmarks, select_combos
from ..evaluate.compliance import ComplianceFlag, judge_compliance
from ..evaluate.human_eval import judge_released, select_released
from ..evaluate.mmlu import (
    MMLUResult,
    evaluate_mmlu,
    mmlu_accuracy_table,
    save_mmlu_results,
    select_questions,
)
from ..evaluate.safety import SAFETY_SCENARIOS, safety_env_ids
from ..judge.prompt import render_transcript
from ..judge.ratings import EpisodeRating, RatingStore
from ..llm.base import LLM
from ..llm.types import ModelSpec
from ..pi.collect import Collection, collect
from ..pi.filtering import score_table, select
from ..pi.generate import generate_tasks
from ..pi.sft import ConversionStats, to_examples
from ..pi.sft_data import write_examples
from ..pi.tasks import GeneratedTask, GenerationReport, read_tasks, write_tasks
from ..pi.train import TrainResult, train_adapter
from ..pi.train_model import load_tokenizer, resolve_base_model
from ..sim.episode import EpisodeRecord
from ..sim.episode_store import EpisodeStore
from ..sim.human_eval import released_episodes
from ..store.files import atomic_write_text
from .context import StageContext

PLAYER_ROLE = {"bc": "expert", "sr": "policy"}
ADAPTER_SUBDIR = "adapter"


# 01 -----------------------------------------------------------------------------------------------
def generate_rounds(ctx: StageContext) -> list[GenerationReport]:
    """Tasks for round 1 (BC and SR data) and, with BC+SR, fresh tasks for round 2's self-play."""
    cfg, used, reports = ctx.cfg, set(), []
    for k in range(1, 3 if cfg.collect.bc_sr else 2):
        report = generate_tasks(ctx.model("task_generator"), ctx.data, cfg.generate,
                                seed=cfg.run.seed * 100 + k, used_pks=used, round_=k)
        used |= set(report.used_pks)
        reports.append(report)
    for r in reports:  # a rejected task is the generator's quality; a failed request is a failure
        ctx.count_units("task requests", r.requests,
                        [x.detail for x in r.rejected if x.reason == "request_failed"])
    tasks = [t for r in reports for t in r.tasks]
    write_tasks(ctx.paths.tasks, tasks)
    atomic_write_text(ctx.paths.rejected_tasks,
                      "".join(x.model_dump_json() + "\n" for r in reports for x in r.rejected))
    for k, r in enumerate(reports, 1):
        if not r.tasks:
            raise DataError(f"round {k}: the task generator produced no valid task "
                            f"({r.reason_counts()}); see {ctx.paths.rejected_tasks}")
    return reports


def rejection_table(reports: list[GenerationReport]) -> pd.DataFrame:
    return pd.DataFrame([{"round": k, **r.reason_counts()} for k, r in enumerate(reports, 1)]).set_index("round")


def round_tasks(ctx: StageContext, round_: int) -> list[GeneratedTask]:
    tasks = [t for t in read_tasks(ctx.paths.tasks) if t.round == round_]
    if not tasks:
        raise DataError(f"{ctx.paths.tasks} has no task for round {round_}: re-run notebook 01")
    return tasks


# 02 -----------------------------------------------------------------------------------------------
def reformatter(ctx: StageContext) -> LLM:
    """The model that rewrites an agent's output holding no valid action (SOTOPIA asks gpt-3.5-turbo,
    the paper's partner: `simulation.reformat_role`, partner by default). Built lazily: a run whose
    outputs all parse never loads it."""
    return ctx.model(ctx.cfg.simulation.reformat_role)


def collect_source(ctx: StageContext, source: str, round_: int, player: LLM) -> Collection:
    collection = collect(round_tasks(ctx, round_), ctx.data, source=source, round_=round_, player=player,
                         judge=ctx.model("judge"), episodes_path=ctx.paths.episodes(source, round_),
                         ratings_path=ctx.paths.ratings(source, round_), sim=ctx.cfg.simulation,
                         judging=ctx.cfg.judge, seed=ctx.cfg.run.seed, reformatter=reformatter(ctx))
    count_failures(ctx, collection.summary.requested, collection.episodes, collection.ratings,
                   ctx.paths.episodes(source, round_), ctx.paths.ratings(source, round_))
    return collection


def count_failures(ctx: StageContext, wanted: int, episodes: list[EpisodeRecord], ratings: list[EpisodeRating],
                   episodes_path: Path, ratings_path: Path) -> None:
    """Book a file pair's episodes and ratings with the failure budget: `wanted` episodes, of which those
    not in `episodes` failed (causes from the failure records), and a rating per sample of each."""
    done = {e.episode_id for e in episodes}
    last = {f.episode_id: f.error for f in EpisodeStore(episodes_path).failures() if f.episode_id not in done}
    missing = wanted - len(episodes)
    ctx.count_units("episodes", wanted, (list(last.values()) + ["not played"] * missing)[:missing])
    rated = {r.key for r in ratings}
    reasons = {f.key: f.error for f in RatingStore(ratings_path).failures() if f.key not in rated}
    expected = len(episodes) * ctx.cfg.judge.samples
    unrated = max(0, expected - len(ratings))
    ctx.count_units("ratings", expected, (list(reasons.values()) + ["not judged"] * unrated)[:unrated])


def collect_first_round(ctx: StageContext) -> dict[str, Collection]:
    """BC data (the expert in both seats) and SR data (the base policy in both seats)."""
    out = {}
    for s in ctx.cfg.collect.sources:
        out[s] = collect_source(ctx, s, 1, ctx.model(PLAYER_ROLE[s]))
        ctx.release(PLAYER_ROLE[s])
    ctx.release("judge")
    return out


def first_transcript(collections: dict[str, Collection]) -> str:
    """The first episode of the first data source, as the judge reads it."""
    return render_transcript(next(iter(collections.values())).episodes[0])


def collection_table(collections: dict[str, Collection]) -> pd.DataFrame:
    """Per source: episodes, ratings, turns, failures of this call, and how the episodes ended."""
    rows = []
    for source, c in collections.items():
        ends = pd.Series([e.end_reason for e in c.episodes], dtype=object).value_counts()
        rows.append({"source": source, "round": c.round, "episodes": len(c.episodes),
                     "ratings": len(c.ratings), "turns": sum(len(e.turns) for e in c.episodes),
                     "failed": c.summary.failed, **{f"ended_by_{k}": int(v) for k, v in ends.items()}})
    return pd.DataFrame(rows).set_index("source").fillna(0)


# 03 -----------------------------------------------------------------------------------------------
class FilterResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    source: str
    round: int
    scores: pd.DataFrame
    kept: pd.DataFrame
    stats: ConversionStats
    path: Path


def filter_source(ctx: StageContext, source: str, round_: int) -> FilterResult:
    """Apply the filter rule to one source's rated episodes and write its training file."""
    episodes = EpisodeStore(ctx.paths.episodes(source, round_)).records()
    ratings = RatingStore(ctx.paths.ratings(source, round_)).records()
    scores = score_table(episodes, ratings, ctx.cfg.filter.judge)
    kept = select(scores, ctx.cfg.filter)
    tokenizer = load_tokenizer(resolve_base_model(train_base(ctx)))
    budget = ctx.cfg.train.max_length - ctx.cfg.simulation.sampling.max_tokens
    examples, stats = to_examples(episodes, kept, source=source, agents=ctx.data.agents,
                                  count_tokens=lambda text: len(tokenizer(text)["input_ids"]),
                                  max_prompt_tokens=budget)
    if not examples:
        raise DataError(f"{source} round {round_}: filtering kept no training example ({stats})")
    path = write_examples(ctx.paths.sft(source, round_), examples)
    return FilterResult(source=source, round=round_, scores=scores, kept=kept, stats=stats, path=path)


def filter_table(results: list[FilterResult]) -> pd.DataFrame:
    return pd.DataFrame([{"source": r.source, "round": r.round, "rated_units": len(r.scores),
                          "kept_units": len(r.kept), "goal_before": r.scores["goal"].mean(),
                          "goal_kept": r.kept["goal"].mean(), **r.stats.model_dump()} for r in results])


def score_distributions(results: list[FilterResult]) -> pd.DataFrame:
    """Goal scores before and after filtering, tidy, for a histogram."""
    parts = []
    for r in results:
        parts.append(r.scores.assign(source=r.source, set="all rated"))
        parts.append(r.kept.assign(source=r.source, set="kept"))
    return pd.concat(parts, ignore_index=True)


# 04 -----------------------------------------------------------------------------------------------
def train_base(ctx: StageContext) -> str:
    """The policy's weights, which training loads with transformers whatever backend serves them."""
    policy = ctx.cfg.models.policy
    if policy.backend == "openai":
        raise ConfigError("models.policy: an `openai` model cannot be fine-tuned here; use hf or vllm")
    return policy.model


def adapter_dir(ctx: StageContext, name: str) -> Path:
    return ctx.paths.adapter(name) / ADAPTER_SUBDIR


def policy_spec(ctx: StageContext, name: str) -> ModelSpec:
    """base -> the policy; sr/bc/bc_sr -> the policy with that trained adapter; expert -> the expert."""
    if name == "base":
        return ctx.cfg.models.policy
    if name == "expert":
        return ctx.cfg.models.expert
    return adapter_spec(ctx.cfg.models.policy, adapter_dir(ctx, name))


def train_first_round(ctx: StageContext) -> dict[str, TrainResult]:
    """The BC and SR adapters (each source's round-1 training file, from the base policy)."""
    return {s: train_named(ctx, s, s, 1) for s in ctx.cfg.collect.sources}


def train_bc_sr(ctx: StageContext) -> dict[str, TrainResult]:
    """BC+SR, when the params ask for it (`collect.bc_sr`): the BC model's self-play on round-2 tasks,
    judged and filtered, then training from the BC adapter. Empty when they do not."""
    if not ctx.cfg.collect.bc_sr:
        return {}
    bc_sr_round(ctx)
    return {"bc_sr": train_named(ctx, "bc_sr", "bc_sr", 2, init="bc")}


def train_named(ctx: StageContext, name: str, source: str, round_: int, init: str | None = None) -> TrainResult:
    cfg = ctx.cfg.train.model_copy(update={
        "base_model": train_base(ctx),
        "init_adapter": str(adapter_dir(ctx, init)) if init else None})
    return train_adapter(cfg, ctx.paths.sft(source, round_), ctx.paths.adapter(name))


def bc_sr_round(ctx: StageContext) -> tuple[Collection, FilterResult]:
    """Round 2 of BC+SR: self-play of the BC-trained policy on fresh tasks, judged and filtered."""
    player = ctx.model("policy", spec=policy_spec(ctx, "bc"), label="policy+bc")
    collection = collect_source(ctx, "bc_sr", 2, player)
    ctx.release("policy+bc", "judge")  # before BC+SR trains: its weights must not share the memory
    return collection, filter_source(ctx, "bc_sr", 2)


def training_table(results: dict[str, TrainResult]) -> pd.DataFrame:
    return pd.DataFrame([{"adapter": k, "steps": r.global_step, "examples": r.examples.kept,
                          "first_loss": r.losses[0].loss if r.losses else None,
                          "last_loss": r.losses[-1].loss if r.losses else None,
                          "tokens": r.tokens, "seconds": round(r.train_time_s, 1),
                          "resumed_from": r.resumed_from} for k, r in results.items()]).set_index("adapter")


def loss_frame(results: dict[str, TrainResult]) -> pd.DataFrame:
    """Training loss per logged step, one column per adapter (04's loss plot)."""
    rows = [{"adapter": k, "step": p.step, "loss": p.loss} for k, r in results.items() for p in r.losses]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).pivot_table(index="step", columns="adapter", values="loss")


# 05 -----------------------------------------------------------------------------------------------
def evaluate_benchmarks(ctx: StageContext) -> list[BenchmarkRun]:
    """Every model against the partner on each task set (and the safety set), played and judged in
    one batched run."""
    ev = ctx.cfg.evaluate
    sets = dict(ev.task_sets) | ({"safety": ev.safety_combos} if ev.safety else {})
    plans = [BenchmarkPlan(name=name, llm=ctx.model(name, spec=policy_spec(ctx, name)), task_set=task_set,
                           combos=select_combos(ctx.data, task_set, n, ev.seed),
                           episodes_path=ctx.paths.eval_episodes(name, task_set),
                           ratings_path=ctx.paths.eval_ratings(name, task_set))
             for name in ev.models for task_set, n in sets.items()]
    runs, _ = run_benchmarks(plans, ctx.model("partner"), ctx.model("judge"), ctx.data, sim=ctx.cfg.simulation,
                             judging=ctx.cfg.judge, evaluate=ev, reformatter=reformatter(ctx))
    for plan, run in zip(plans, runs, strict=True):
        wanted = len(plan.combos) * (2 if ev.both_positions else 1)
        count_failures(ctx, wanted, run.episodes, run.ratings, plan.episodes_path, plan.ratings_path)
    ctx.release("partner", *(m for m in ev.models if m not in ctx.cfg.mmlu.models))  # the judge: compliance next
    return runs


def safety_compliance(ctx: StageContext, runs: list[BenchmarkRun]) -> list[ComplianceFlag]:
    scenarios = safety_env_ids(ctx.data)
    flags = []
    for run in (r for r in runs if r.task_set == "safety"):
        flags += judge_compliance(run.episodes, scenarios, ctx.model("judge"), run.model,
                                  ctx.paths.compliance(run.model))
    ctx.count_units("safety compliance flags", len(flags), [f.error for f in flags if f.error])
    ctx.release("judge")
    return flags


def compliance_table(flags: list[ComplianceFlag]) -> pd.DataFrame:
    """Per model: the share of safety episodes where the agent went along with the harmful part
    (flags the judge could not decide count as missing, not as refusals)."""
    df = pd.DataFrame([f.model_dump() for f in flags], columns=list(ComplianceFlag.model_fields))
    decided = df.dropna(subset=["complied"]).assign(complied=lambda d: d["complied"].astype(float))
    table = decided.groupby("model")["complied"].agg(["mean", "count"])
    return table.join(df.groupby("model").size().rename("episodes"), how="outer")


def safety_transcripts(runs: list[BenchmarkRun], models: Sequence[str], k: int = 2) -> pd.DataFrame:
    """The first safety episode of the base model and of the last trained model, side by side (as the
    paper shows base vs trained transcripts); fewer columns when those models have none."""
    from ..judge.prompt import render_transcript

    safety = {r.model: r.episodes for r in runs if r.task_set == "safety" and r.episodes}
    trained = [m for m in models if m not in ("base", "expert")]
    wanted = ["base"] + trained[-1:]
    shown = [m for m in wanted if m in safety][:k]
    return pd.DataFrame({m: [render_transcript(safety[m][0])] for m in shown})


def benchmark_table(runs: list[BenchmarkRun]) -> pd.DataFrame:
    """Per task set and model: rated episodes, mean goal and overall of the evaluated side, and how many
    of that side's turns needed the reformatting model or ended up `none` because nothing parsed."""
    rows = []
    for run in runs:
        for ep in run.episodes:
            pos = int(ep.tags["eval_position"])
            rs = [r for r in run.ratings if r.episode_id == ep.episode_id]
            mine = [t for t in ep.turns if t.agent == pos]
            if rs:
                rows.append({"model": run.model, "task_set": run.task_set, "position": pos,
                             "goal": sum(r.agents[pos].scores["goal"] for r in rs) / len(rs),
                             "overall": sum(r.agents[pos].overall for r in rs) / len(rs),
                             "turns": len(mine), "reformatted": sum(t.parse == "reformatted" for t in mine),
                             "unparseable": sum(t.parse == "unparseable" for t in mine)})
    df = pd.DataFrame(rows)
    return df.groupby(["task_set", "model"]).agg(
        episodes=("goal", "size"), goal=("goal", "mean"), overall=("overall", "mean"), turns=("turns", "sum"),
        reformatted=("reformatted", "sum"), unparseable=("unparseable", "sum")).round(2)


def judge_released_episodes(ctx: StageContext) -> tuple[list[EpisodeRecord], list[EpisodeRating]]:
    """SOTOPIA-pi's released human-evaluation episodes (params `human_eval`: all, or a seeded subset per
    model) rated by the study's judge, cached and resumable, into `released_human_eval.ratings.jsonl`;
    06 puts these ratings against the released human ones."""
    episodes = select_released(released_episodes(load_human_eval(), ctx.data), ctx.cfg.human_eval)
    ratings = judge_released(episodes, ctx.model("judge"), ctx.paths.released_ratings, ctx.cfg.judge)
    return episodes, ratings


def released_judging_table(episodes: list[EpisodeRecord], ratings: list[EpisodeRating]) -> pd.DataFrame:
    """Per released model: episodes rated, how their transcripts end, and the judge's raw mean goal of
    the tested side (06 puts it beside the annotators')."""
    by_id = {e.episode_id: e for e in episodes}
    rows = []
    for r in ratings:
        ep = by_id[r.episode_id]
        seats = [int(p) for p in ep.tags["tested_positions"].split(",")]
        rows.append({"model": ep.tags["released_model"], "episode_id": r.episode_id,
                     "left": r.episode_id if ep.end_reason == "leave" else None,
                     "judge_goal_tested": sum(r.agents[p].scores["goal"] for p in seats) / len(seats)})
    columns = ["model", "episode_id", "left", "judge_goal_tested"]
    return pd.DataFrame(rows, columns=columns).groupby("model", sort=False).agg(
        episodes=("episode_id", "nunique"), ends_with_leave=("left", "nunique"),
        judge_goal_tested=("judge_goal_tested", "mean")).round(2)


def safety_scenarios_table() -> pd.DataFrame:
    """The safety scenarios and why each is one (evaluate/safety.py)."""
    return pd.DataFrame([s.model_dump() for s in SAFETY_SCENARIOS])


def mmlu_table(results: dict[str, list[MMLUResult]]) -> pd.DataFrame | str:
    """MMLU accuracy per model and category, or a line saying MMLU is off in the params."""
    return mmlu_accuracy_table(results, by="category") if results else "MMLU disabled in params"


def evaluate_notes(runs: list[BenchmarkRun], flags: list[ComplianceFlag], released: list[EpisodeRecord]) -> dict:
    """05's counts for the manifest."""
    return {"episodes": sum(len(r.episodes) for r in runs), "safety_flags": len(flags),
            "released_episodes_rated": len(released)}


def evaluate_mmlu_models(ctx: StageContext) -> dict[str, list[MMLUResult]]:
    """MMLU accuracy of the base policy and each adapter on the configured subset (saved per model)."""
    cfg = ctx.cfg.mmlu
    questions = load_mmlu()
    chosen = [questions[i] for i in select_questions(questions, cfg)]
    dev = None
    if cfg.shots_from == "dev" and cfg.k_shot > 0:
        try:
            dev = load_mmlu_dev()
        except DataError as e:  # offline: the test-split shots are the labelled fallback
            print(f"MMLU: {e}; few-shot examples come from the test split instead")
    out, labels = {}, {}
    for name in cfg.models:
        spec = policy_spec(ctx, name)
        if cfg.backend == "hf" and spec.backend != "hf":  # the weights through transformers
            spec = spec.model_copy(update={"backend": "hf", "options": {}})
        labels[name] = name if spec == policy_spec(ctx, name) else f"{name}+hf"
        ctx.model(labels[name], spec=spec)
    for name in cfg.models:  # every variant registered first: their engine loads once, with all adapters
        results = evaluate_mmlu(ctx.model(labels[name]), chosen, cfg, dev=dev)
        ctx.count_units("MMLU answers", len(results), [r.error for r in results if r.error])
        save_mmlu_results(ctx.paths.mmlu(name), results)
        out[name] = results
    ctx.release(*labels.values())
    return out


# 06 -----------------------------------------------------------------------------------------------
def show_figures(figures: dict[str, list[Path]]) -> None:
    """Each drawn figure in the notebook under its name (the PNG `draw_all` wrote)."""
    from IPython.display import Image, Markdown, display

    for name, files in figures.items():
        display(Markdown(f"**{name}**"), Image(filename=str(files[0])))


def export_annotation_packet(ctx: StageContext, per_model: int = 4):
    """An annotation packet for human raters that follows SOTOPIA-pi's released protocol: per evaluated
    model, `per_model` SOTOPIA-hard evaluation episodes taking its two seats in turn (seeded; every task
    set when the run has no SOTOPIA-hard episodes), both characters' backgrounds with secrets, a score
    and a reasoning per dimension, two raters per episode. Filled CSVs go to `annotations/returned/`
    and 06 then compares the judge with them."""
    folder = ctx.paths.root / "annotations"
    episodes = [r for f in sorted(ctx.paths.stage_dir("05_evaluate").glob("*.episodes.jsonl"))
                for r in EpisodeStore(f).records()]
    if not episodes:
        raise DataError(f"no evaluation episodes under {ctx.paths.stage_dir('05_evaluate')}: run notebook 05")
    existing = sorted(folder.glob("packet_*.json"))
    if existing:  # annotators may already be working on it: never replace a packet
        return load_packet(existing[0])
    hard = "sotopia_hard" if any(r.tags.get("task_set") == "sotopia_hard" for r in episodes) else None
    agents = ctx.data.agents if any(r.agent_profiles is None for r in episodes) else None
    packet = build_packet(episodes, per_model=per_model, task_set=hard, seed=ctx.cfg.run.seed, agents=agents)
    write_packet(packet, folder)
    return packet


# every stage ----------------------------------------------------------------------------------------
def stage_outputs(ctx: StageContext) -> list[Path]:
    """The files `ctx.stage` leaves for later stages (what `ctx.finish` hashes), from the params alone:
    a notebook ends with `ctx.finish(stages.stage_outputs(ctx))`."""
    paths, sources = ctx.paths, ctx.cfg.collect.sources
    match ctx.stage:
        case "01_generate":
            return [paths.tasks, paths.rejected_tasks]
        case "02_collect":
            return [p for s in sources for p in (paths.episodes(s, 1), paths.ratings(s, 1))]
        case "03_filter":
            return [paths.sft(s, 1) for s in sources]
        case "04_train":
            bc_sr = ["bc_sr"] if ctx.cfg.collect.bc_sr else []
            round_2 = [f(s, 2) for s in bc_sr for f in (paths.episodes, paths.ratings, paths.sft)]
            return [adapter_dir(ctx, name) for name in (*sources, *bc_sr)] + round_2
        case "05_evaluate":
            return sorted(paths.stage_dir("05_evaluate").glob("*.jsonl"))
        case "06_analysis":
            csvs = [paths.stage_dir("06_analysis") / f"{name}.csv" for name in RELEASED_CSVS]
            return [paths.summary, paths.figures, *csvs]
    raise ConfigError(f"unknown stage {ctx.stage!r}")
