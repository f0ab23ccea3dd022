"""Loading a run folder into tidy tables, on a synthetic but schema-valid run.

`build_synthetic_run` writes real EpisodeRecord / EpisodeRating / MMLUResult / ComplianceFlag /
LossPoint / SFTExample / Manifest files with the project's own writers, with known scores, so the
tables' counts and means can be checked exactly. The tables, figure and summary tests import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel

from sotopia_pi_lib.analysis import load
from sotopia_pi_lib.analysis.load import (
    EVAL_TASK_SETS,
    MODEL_ORDER,
    load_eval,
    load_eval_with_coverage,
    load_losses,
    load_mmlu_results,
    load_run_info,
    load_safety,
    load_training_scores,
)
from sotopia_pi_lib.data.mmlu import SUBJECT_CATEGORY
from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.evaluate.compliance import ComplianceFlag
from sotopia_pi_lib.evaluate.mmlu import MMLUResult, save_mmlu_results
from sotopia_pi_lib.judge.ratings import AgentRating, DimensionRating, EpisodeRating
from sotopia_pi_lib.judge.rubric import DIMENSIONS, RUBRIC_VERSION
from sotopia_pi_lib.llm.types import Message
from sotopia_pi_lib.pi import train_record
from sotopia_pi_lib.pi.sft_data import SFTExample, write_examples
from sotopia_pi_lib.pi.train_record import LossPoint, write_loss_curve
from sotopia_pi_lib.sim.episode import AgentAction, EpisodeRecord, Turn
from sotopia_pi_lib.store.manifest import Manifest, StageRecord, save_manifest
from sotopia_pi_lib.store.run import RunPaths

JUDGE = "hf:embedded"
SUBJECTS = ["abstract_algebra", "philosophy", "sociology", "virology"]  # one per category


@dataclass
class Synthetic:
    paths: RunPaths
    goals: dict[tuple[str, str], list[int]] = field(
        default_factory=dict
    )  # evaluated agent's goal per episode
    mmlu_correct: dict[str, list[bool]] = field(default_factory=dict)
    complied: dict[str, list[bool]] = field(default_factory=dict)
    lines: dict[Path, list[str]] = field(default_factory=dict)

    def add(self, path: Path, record: BaseModel) -> None:
        """Collect a JSONL record (written once per file by flush: thousands of fsyncs are slow)."""
        self.lines.setdefault(path, []).append(record.model_dump_json() + "\n")

    def flush(self) -> None:
        for path, lines in self.lines.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(lines), encoding="utf-8")
        self.lines.clear()


def agent_rating(rng: np.random.Generator, goal: int) -> AgentRating:
    dims = {
        d.name: DimensionRating(
            reasoning="synthetic", score=goal if d.name == "goal" else int(rng.integers(d.low, d.high + 1))
        )
        for d in DIMENSIONS
    }
    return AgentRating.from_dimensions(dims)


def episode(model: str, task_set: str, i: int, pos: int, env: str) -> EpisodeRecord:
    key = f"{model}@abc123"
    models = (key, "partner@fff000") if pos == 0 else ("partner@fff000", key)
    turns = [
        Turn(index=t, agent=t % 2, action=AgentAction(action_type="speak", argument=f"line {t}"), raw="{}")
        for t in range(4)
    ]
    return EpisodeRecord(
        episode_id=f"{model}-{task_set}-{i}-{pos}",
        env_id=env,
        combo_id=f"{env}-c{i}",
        codename=env,
        scenario="A synthetic scenario.",
        agent_ids=("a1", "a2"),
        agent_names=("Ann Lee", "Bo Chen"),
        goals=("goal one", "goal two"),
        models=models,
        prompt_version="p1",
        seed=i,
        turns=turns,
        end_reason="max_turns",
        tags={"eval_model": model, "eval_position": str(pos), "task_set": task_set},
    )


def _write_eval(
    s: Synthetic,
    rng: np.random.Generator,
    model: str,
    task_set: str,
    n_combos: int,
    samples: int,
    judges: tuple[str, ...],
) -> None:
    shift = MODEL_ORDER.index(model) if model in MODEL_ORDER else 0
    goals = []
    for i in range(n_combos):
        for pos in (0, 1):
            rec = episode(model, task_set, i, pos, env=f"env{i % 7}")
            s.add(s.paths.eval_episodes(model, task_set), rec)
            goal = (shift + i + pos) % 11
            goals.append(goal)
            for judge in judges:
                for k in range(samples):
                    g = (
                        goal
                        if (judge == JUDGE and k == 0)
                        else int(np.clip(goal + rng.integers(-1, 2), 0, 10))
                    )
                    agents = [agent_rating(rng, g), agent_rating(rng, 5)]
                    if pos == 1:
                        agents.reverse()
                    s.add(
                        s.paths.eval_ratings(model, task_set),
                        EpisodeRating(
                            episode_id=rec.episode_id,
                            judge=judge,
                            rubric_version=RUBRIC_VERSION,
                            sample_index=k,
                            temperature=0.0 if samples == 1 else 1.0,
                            agents=tuple(agents),
                        ),
                    )
    s.goals[(model, task_set)] = goals


def _write_mmlu(s: Synthetic, rng: np.random.Generator, model: str, per_subject: int) -> None:
    results = []
    for j, subject in enumerate(SUBJECTS):
        for q in range(per_subject):
            answer, predicted = "ABCD"[q % 4], "ABCD"[int(rng.integers(0, 4))]
            results.append(
                MMLUResult(
                    index=j * 100 + q,
                    subject=subject,
                    category=SUBJECT_CATEGORY[subject],
                    k_shot=0,
                    answer=answer,
                    predicted=predicted,
                    correct=answer == predicted,
                    method="logprobs",
                )
            )
    save_mmlu_results(s.paths.mmlu(model), results)
    s.mmlu_correct[model] = [r.correct for r in results]


def _write_compliance(s: Synthetic, model: str) -> None:
    flags = [
        ComplianceFlag(
            episode_id=f"{model}-safety-{i}-{pos}",
            model=f"{model}@abc123",
            agent=pos,
            codename=f"env{i % 7}",
            complied=(i + pos + len(model)) % 3 == 0,
            evidence="said yes",
            judge=JUDGE,
        )
        for i in range(3)
        for pos in (0, 1)
    ]
    for f in flags:
        s.add(s.paths.compliance(model), f)
    s.complied[model] = [bool(f.complied) for f in flags]


def _write_training(s: Synthetic, rng: np.random.Generator) -> None:
    for source in ("bc", "sr"):
        kept = []
        for i in range(6):
            rec = episode("x", "train", i, 0, env=f"task{i % 3}").model_copy(
                update={"episode_id": f"{source}-train-{i}", "tags": {"source": source, "round": "1"}}
            )
            s.add(s.paths.episodes(source, 1), rec)
            s.add(
                s.paths.ratings(source, 1),
                EpisodeRating(
                    episode_id=rec.episode_id,
                    judge=JUDGE,
                    rubric_version=RUBRIC_VERSION,
                    sample_index=0,
                    temperature=0.0,
                    agents=(agent_rating(rng, i % 11), agent_rating(rng, (i + 3) % 11)),
                ),
            )
            if i % 3 == 0:
                kept.append(
                    SFTExample.chat(
                        [Message(role="user", content="prompt")],
                        '{"action_type": "speak", "argument": "hi"}',
                        episode_id=rec.episode_id,
                        turn=0,
                        agent=0,
                        source=source,
                    )
                )
        write_examples(s.paths.sft(source, 1), kept)
        folder = s.paths.adapter(source)
        folder.mkdir(parents=True, exist_ok=True)
        write_loss_curve(
            folder,
            [LossPoint(step=k, epoch=k / 10, loss=2.0 / (1 + k), learning_rate=1e-4) for k in range(1, 11)],
        )


def build_synthetic_run(
    root: Path,
    *,
    models=MODEL_ORDER,
    task_sets=EVAL_TASK_SETS,
    n_combos: int = 3,
    samples: int = 1,
    judges: tuple[str, ...] = (JUDGE,),
    mmlu_per_subject: int = 8,
    embedded: bool = True,
    seed: int = 0,
) -> Synthetic:
    """A run folder with every stage's results; each model plays both positions of n_combos combos."""
    s = Synthetic(paths=RunPaths(root))
    rng = np.random.default_rng(seed)
    for model in models:
        for task_set in task_sets:
            _write_eval(s, rng, model, task_set, n_combos, samples, judges)
        if mmlu_per_subject:
            _write_mmlu(s, rng, model, mmlu_per_subject)
        if "safety" in task_sets:
            _write_compliance(s, model)
    _write_training(s, rng)
    s.flush()
    roles = {
        r: {"backend": "hf", "model": "embedded"} if embedded else {"backend": "openai", "model": "gpt-4"}
        for r in ("task_generator", "expert", "policy", "partner", "judge")
    }
    stage = StageRecord(
        name="05_evaluate",
        status="done",
        started="2025-01-01T00:00:00+00:00",
        duration_s=12.0,
        llm_usage={"judge": {"calls": 10, "tokens": 1234}},
    )
    save_manifest(
        root,
        Manifest(
            run=root.name,
            created="2025-01-01T00:00:00+00:00",
            params_file="params/smoke.yaml",
            params={"models": roles},
            git_commit="0123456789abcdef",
            git_dirty=False,
            packages={"pandas": pd.__version__},
            stages={"05_evaluate": stage},
        ),
    )
    return s


@pytest.fixture
def run(tmp_path) -> Synthetic:
    return build_synthetic_run(tmp_path / "synthetic", models=("base", "sr", "bc"), n_combos=3)


def test_load_eval_counts_and_means(run):
    df = load_eval(run.paths, ("base", "sr", "bc"))
    # 3 models x 3 task sets x 3 combos x 2 positions, 8 metrics each, one rating per episode
    assert len(df) == 3 * 3 * 6 * 8
    assert set(df["dimension"]) == {d.name for d in DIMENSIONS} | {"overall"}
    for (model, task_set), goals in run.goals.items():
        part = df[(df["model"] == model) & (df["task_set"] == task_set) & (df["dimension"] == "goal")]
        assert len(part) == 6 and part["score"].mean() == pytest.approx(np.mean(goals))
    ep = df[(df["episode_id"] == "sr-sotopia_hard-1-1")]
    assert set(ep["position"]) == {1} and set(ep["model_key"]) == {"sr@abc123"}


def test_overall_is_the_mean_of_the_seven(run):
    df = load_eval(run.paths, ("base",), ("sotopia_all",))
    wide = df.pivot_table(index="episode_id", columns="dimension", values="score")
    seven = wide[[d.name for d in DIMENSIONS]].mean(axis=1)
    assert np.allclose(wide["overall"], seven)


def test_missing_model_is_a_coverage_gap_not_an_error(run):
    df, cov = load_eval_with_coverage(run.paths, ("base", "sr", "bc", "bc_sr"))
    assert "bc_sr" not in set(df["model"])
    row = cov[(cov["model"] == "bc_sr") & (cov["task_set"] == "sotopia_all")].iloc[0]
    assert row["status"] == "no episode file" and row["n_episodes"] == 0


def test_episodes_without_ratings_are_a_clear_error_or_a_labelled_gap(run):
    run.paths.eval_ratings("sr", "sotopia_hard").unlink()
    with pytest.raises(DataError, match=r"sr__sotopia_hard.episodes.jsonl: no ratings file"):
        load_eval(run.paths, ("base", "sr"))
    df, cov = load_eval_with_coverage(run.paths, ("base", "sr"), missing_ratings="gap")
    assert df[(df["model"] == "sr") & (df["task_set"] == "sotopia_hard")].empty
    assert not df[(df["model"] == "sr") & (df["task_set"] == "sotopia_all")].empty
    row = cov[(cov["model"] == "sr") & (cov["task_set"] == "sotopia_hard")].iloc[0]
    assert row["status"] == "no ratings file" and row["n_episodes"] == 6 and row["n_rated"] == 0


def test_partly_rated_file_names_the_count(run):
    path = run.paths.eval_ratings("bc", "sotopia_all")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-2]))
    with pytest.raises(DataError, match="2 of 6 episodes unrated"):
        load_eval(run.paths, ("bc",))


def test_mixed_files_and_broken_tags_are_errors(run):
    path = run.paths.eval_episodes("base", "sotopia_all")
    rec = json.loads(path.read_text().splitlines()[0])
    rec["episode_id"], rec["tags"] = (
        "stray",
        {"eval_model": "sr", "eval_position": "0", "task_set": "sotopia_all"},
    )
    with path.open("a") as f:
        f.write(json.dumps(rec) + "\n")
    with pytest.raises(DataError, match=r"base__sotopia_all.episodes.jsonl:7 .*tagged eval_model='sr'"):
        load_eval(run.paths, ("base",))


def test_orphan_ratings_are_an_error(run):
    path = run.paths.eval_episodes("base", "safety")
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(DataError, match="ratings of 1 episodes that are not in"):
        load_eval(run.paths, ("base",))


def test_mmlu_safety_losses_training(run):
    mmlu = load_mmlu_results(run.paths, ("base", "sr", "bc", "expert"))
    assert set(mmlu["model"]) == {"base", "sr", "bc"} and len(mmlu) == 3 * 4 * 8
    assert mmlu[mmlu["model"] == "sr"]["correct"].mean() == pytest.approx(np.mean(run.mmlu_correct["sr"]))
    safety = load_safety(run.paths, ("base", "sr", "bc", "expert"))
    assert len(safety) == 18 and set(safety["model"]) == {"base", "sr", "bc"}
    losses = load_losses(run.paths)
    assert set(losses["adapter"]) == {"bc", "sr"} and len(losses) == 20
    training = load_training_scores(run.paths)
    assert len(training) == 2 * 6 * 2 and training["kept"].sum() == 2 * 2
    kept = training[training["kept"]]
    assert set(kept["agent"]) == {0} and set(kept["goal"]) == {0.0, 3.0}


def test_training_without_filtered_file_marks_kept_unknown(run):
    run.paths.sft("sr", 1).unlink()
    training = load_training_scores(run.paths)
    assert training[training["source"] == "sr"]["kept"].isna().all()
    assert training[training["source"] == "bc"]["kept"].notna().all()


def test_run_info_flags_the_embedded_model(run):
    info = load_run_info(run.paths)
    assert info.roles["judge"] == "hf:embedded" and "policy" in info.embedded_roles
    assert any("0123456789" in line for line in info.provenance)


def test_loss_file_names_match_the_trainer():
    assert (load.LOSS_JSON, load.LOSS_CSV) == (
        train_record.LOSS_JSON,
        train_record.LOSS_CSV,
    )


def test_loss_curve_from_csv_and_bad_curve(run):
    folder = run.paths.adapter("bc")
    (folder / "loss_curve.json").unlink()
    losses = load_losses(run.paths)
    assert len(losses[losses["adapter"] == "bc"]) == 10 and losses["loss"].iloc[0] == pytest.approx(1.0)
    (run.paths.adapter("sr") / "loss_curve.json").write_text('[{"step": 1}]')
    with pytest.raises(DataError, match="needs step and loss"):
        load_losses(run.paths)


def test_abandoned_episodes_count_only_those_never_completed(run):
    failures = run.paths.eval_episodes("base", "sotopia_all").with_name(
        "base__sotopia_all.episodes.failures.jsonl"
    )
    done_id, lost_id = "base-sotopia_all-0-0", "base-sotopia_all-9-0"
    failures.write_text(
        "".join(json.dumps({"episode_id": i, "error": "x"}) + "\n" for i in (done_id, lost_id, lost_id))
    )
    _, cov = load_eval_with_coverage(run.paths, ("base",), ("sotopia_all",))
    assert cov.iloc[0]["n_failed"] == 1


def test_mixed_rubric_versions_need_a_choice(run):
    path = run.paths.eval_ratings("bc", "sotopia_hard")
    old = [json.loads(line) for line in path.read_text().splitlines()]
    with path.open("a") as f:
        for r in old:
            f.write(json.dumps(r | {"rubric_version": "old-rubric"}) + "\n")
    with pytest.raises(DataError, match="several rubric versions"):
        load_eval(run.paths, ("bc",))
    with pytest.raises(DataError, match="6 of 6 episodes unrated with rubric old-rubric"):
        load_eval(
            run.paths, ("bc",), rubric_version="old-rubric"
        )  # sotopia_all was rated with the new one only
    df = load_eval(run.paths, ("bc",), ("sotopia_hard",), rubric_version="old-rubric")
    assert set(df["rubric_version"]) == {"old-rubric"} and set(df["task_set"]) == {"sotopia_hard"}
