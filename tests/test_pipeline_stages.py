"""The small tables the stage notebooks show, built in the library so they are tested here."""

from __future__ import annotations

from test_judge_evaluate import SCRIPTS, scripted_episode  # tests/ is on sys.path (no package)

from sotopia_pi_lib.evaluate.benchmark import BenchmarkRun
from sotopia_pi_lib.evaluate.compliance import ComplianceFlag
from sotopia_pi_lib.pi.train_record import LossPoint
from sotopia_pi_lib.pipeline import stages


class _Result:  # the part of TrainResult that loss_frame reads
    def __init__(self, losses):
        self.losses = [LossPoint(step=s, loss=v) for s, v in losses]


def test_loss_frame_has_one_column_per_adapter():
    df = stages.loss_frame({"bc": _Result([(1, 2.0), (2, 1.5)]), "sr": _Result([(1, 3.0)])})
    assert list(df.columns) == ["bc", "sr"] and df.loc[2, "bc"] == 1.5 and df["sr"].isna().sum() == 1
    assert stages.loss_frame({}).empty


def test_compliance_table_counts_undecided_flags_as_missing():
    def flag(model, complied):
        return ComplianceFlag(episode_id=f"e{model}{complied}", model=model, agent=0, codename="x",
                              complied=complied, evidence="", judge="j")  # fmt: skip

    t = stages.compliance_table([flag("base", True), flag("base", False), flag("base", None), flag("bc", None)])
    assert t.loc["base", "mean"] == 0.5 and t.loc["base", "count"] == 2 and t.loc["base", "episodes"] == 3
    assert t.loc["bc", "episodes"] == 1 and t["mean"].isna()["bc"]
    assert stages.compliance_table([]).empty


def test_safety_transcripts_show_base_and_the_last_trained_model(sotopia):
    ep = scripted_episode(sotopia, SCRIPTS[0])
    runs = [BenchmarkRun(model=m, task_set=t, episodes=[ep], ratings=[])
            for m in ("base", "sr", "bc", "expert") for t in ("safety", "sotopia_all")]  # fmt: skip
    df = stages.safety_transcripts(runs, ("base", "sr", "bc", "expert"))
    assert list(df.columns) == ["base", "bc"] and "Turn 1" in df.loc[0, "base"]
    only_base = [r for r in runs if r.model == "base"]
    assert list(stages.safety_transcripts(only_base, ("base", "bc")).columns) == ["base"]


def test_benchmark_table_counts_the_evaluated_sides_parse_outcomes(sotopia):
    from sotopia_pi_lib.judge import DIMENSIONS, RUBRIC_VERSION, EpisodeRating, parse_judgement

    ep = scripted_episode(sotopia, SCRIPTS[0])
    turns = [t.model_copy(update={"parse": p}) for t, p in
             zip(ep.turns, ["reformatted", "unparseable", "unparseable", "ok", "ok", "ok", "ok", "ok"], strict=False)]
    ep = ep.model_copy(update={"turns": turns, "tags": {"eval_position": "0"}})
    obj = {k: {d.name: {"reasoning": "", "score": max(d.low, min(d.high, 3))} for d in DIMENSIONS}
           for k in ("agent_1", "agent_2")}  # fmt: skip
    rating = EpisodeRating(episode_id=ep.episode_id, judge="j", rubric_version=RUBRIC_VERSION, sample_index=0,
                           temperature=0.0, agents=parse_judgement(obj, "t"))  # fmt: skip
    table = stages.benchmark_table([BenchmarkRun(model="base", task_set="sotopia_all", episodes=[ep],
                                                 ratings=[rating])])  # fmt: skip
    row = table.loc[("sotopia_all", "base")]
    mine = [t for t in turns if t.agent == 0]
    assert row["goal"] == 3 and row["turns"] == len(mine)
    assert row["reformatted"] == sum(t.parse == "reformatted" for t in mine) == 1
    assert row["unparseable"] == sum(t.parse == "unparseable" for t in mine) == 1


def test_released_episodes_are_judged_into_the_run_and_tabulated(sotopia, tmp_path):
    """05's step on the released human-evaluation episodes, with the ci params (one base-model episode)
    and a judge that is not a language model (it answers every dimension with its lowest score)."""
    from types import SimpleNamespace

    from test_judge_evaluate import RuleOfThumbJudge

    from sotopia_pi_lib.config import load_config
    from sotopia_pi_lib.pipeline.context import resolve_params
    from sotopia_pi_lib.store.run import RunPaths

    ctx = SimpleNamespace(cfg=load_config(resolve_params("params/ci.yaml")), paths=RunPaths(tmp_path),
                          data=sotopia, model=lambda role: RuleOfThumbJudge())
    episodes, ratings = stages.judge_released_episodes(ctx)
    assert [e.tags["released_model"] for e in episodes] == ["mistral-7b"] and len(ratings) == 1
    assert ctx.paths.released_ratings.is_file()
    table = stages.released_judging_table(episodes, ratings)
    assert table.loc["mistral-7b", "episodes"] == 1 and table.loc["mistral-7b", "judge_goal_tested"] == 0
    assert table.loc["mistral-7b", "ends_with_leave"] == int(episodes[0].end_reason == "leave")


def _ctx(stage: str, tmp_path, **collect):
    from types import SimpleNamespace

    from sotopia_pi_lib.config import load_config
    from sotopia_pi_lib.pipeline.context import resolve_params
    from sotopia_pi_lib.store.run import RunPaths

    cfg = load_config(resolve_params("params/ci.yaml"))
    cfg = cfg.model_copy(update={"collect": cfg.collect.model_copy(update=collect)})
    return SimpleNamespace(stage=stage, cfg=cfg, paths=RunPaths(tmp_path))


def test_stage_outputs_follow_the_params(tmp_path):
    names = lambda ctx: [p.relative_to(tmp_path).as_posix() for p in stages.stage_outputs(ctx)]  # noqa: E731
    assert names(_ctx("02_collect", tmp_path, sources=("bc", "sr"))) == [
        "02_collect/bc_round1.episodes.jsonl", "02_collect/bc_round1.ratings.jsonl",
        "02_collect/sr_round1.episodes.jsonl", "02_collect/sr_round1.ratings.jsonl"]  # fmt: skip
    assert names(_ctx("04_train", tmp_path, sources=("bc", "sr"), bc_sr=True)) == [
        "04_train/bc/adapter", "04_train/sr/adapter", "04_train/bc_sr/adapter",
        "02_collect/bc_sr_round2.episodes.jsonl", "02_collect/bc_sr_round2.ratings.jsonl",
        "03_filter/bc_sr_round2.sft.jsonl"]  # fmt: skip
    assert names(_ctx("04_train", tmp_path, sources=("sr",), bc_sr=False)) == ["04_train/sr/adapter"]
    (tmp_path / "05_evaluate").mkdir()
    for name in ("b.jsonl", "a.jsonl", "notes.txt"):
        (tmp_path / "05_evaluate" / name).write_text("")
    assert names(_ctx("05_evaluate", tmp_path)) == ["05_evaluate/a.jsonl", "05_evaluate/b.jsonl"]
    assert names(_ctx("06_analysis", tmp_path)) == [
        "06_analysis/summary.md", "06_analysis/figures", "06_analysis/released_human_eval.csv",
        "06_analysis/judge_vs_human.csv", "06_analysis/released_human_agreement.csv",
        "06_analysis/judge_goal_gap.csv"]  # fmt: skip


def test_bc_sr_training_is_skipped_when_the_params_turn_it_off(tmp_path):
    assert stages.train_bc_sr(_ctx("04_train", tmp_path, bc_sr=False)) == {}
    assert stages.mmlu_table({}) == "MMLU disabled in params"
