"""The study's judge on the released human-evaluation episodes: the seeded subset, the config block,
and the judge-vs-human path end to end with a scripted judge (the rehearsal profile's served
judge rates a released episode in the notebooks' end-to-end test, tests/test_notebooks_rehearsal.py)."""

from __future__ import annotations

import json

import pytest

from sotopia_pi_lib.analysis.human_eval import (
    judge_frame,
    judge_goal_gap,
    judge_vs_human,
    released_rating_table,
)
from sotopia_pi_lib.config import load_config, parse_config
from sotopia_pi_lib.data.human_eval import load_human_eval
from sotopia_pi_lib.errors import ConfigError
from sotopia_pi_lib.evaluate.human_eval import (
    RELEASED_MODELS,
    HumanEvalConfig,
    judge_released,
    select_released,
)
from sotopia_pi_lib.judge.rate import JudgeConfig
from sotopia_pi_lib.judge.rubric import DIMENSIONS
from sotopia_pi_lib.llm.base import LLM
from sotopia_pi_lib.llm.types import LLMResponse, ModelSpec
from sotopia_pi_lib.pipeline.context import resolve_params
from sotopia_pi_lib.sim.human_eval import released_episodes


@pytest.fixture(scope="module")
def release():
    return load_human_eval()


@pytest.fixture(scope="module")
def episodes(release, sotopia):
    return released_episodes(release, sotopia)


def test_subset_is_seeded_per_model_and_takes_both_seats(episodes):
    cfg = HumanEvalConfig(episodes_per_model=2)
    chosen = select_released(episodes, cfg)
    assert [e.tags["released_model"] for e in chosen] == [m for m in RELEASED_MODELS for _ in range(2)]
    for model in RELEASED_MODELS:
        seats = {e.tags["tested_positions"] for e in chosen if e.tags["released_model"] == model}
        assert seats == ({"0,1"} if model == "gpt-3.5" else {"0", "1"})
    assert select_released(episodes, cfg) == chosen
    others = [select_released(episodes, HumanEvalConfig(episodes_per_model=2, seed=s)) for s in range(1, 4)]
    assert any(o != chosen for o in others)
    assert len(select_released(episodes, HumanEvalConfig())) == 151
    one = select_released(episodes, HumanEvalConfig(episodes_per_model=1, models=("bc+sr",)))
    assert len(one) == 1 and one[0].tags["released_model"] == "bc+sr"


def test_config_block_is_validated():
    base = {"run": {"name": "x"}, "models": {r: {"backend": "hf", "model": "embedded"} for r in
                                             ("task_generator", "expert", "policy", "partner", "judge")},
            "generate": {"n_tasks": 1}}
    assert parse_config(base).human_eval == HumanEvalConfig()
    for bad, msg in (({"episodes_per_model": 0}, "human_eval.episodes_per_model"),
                     ({"models": ["gpt-5"]}, "human_eval.models"),
                     ({"models": ["bc", "bc"]}, "names a model twice"),
                     ({"models": []}, "at least one"),
                     ({"episode_per_model": 2}, "unknown key")):
        with pytest.raises(ConfigError, match=msg):
            parse_config({**base, "human_eval": bad})
    sizes = {p: load_config(resolve_params(f"params/{p}.yaml")).human_eval for p in ("ci", "smoke", "paper")}
    assert sizes["paper"].episodes_per_model is None and set(sizes["paper"].models) == set(RELEASED_MODELS)
    assert sizes["smoke"].episodes_per_model == 2 and set(sizes["smoke"].models) == set(RELEASED_MODELS)
    assert sizes["ci"].episodes_per_model == 1 and len(sizes["ci"].models) == 1


class HumanMirror(LLM):
    """A scripted judge that gives every side the annotators' rounded mean on each dimension (known
    per request from the order of the episodes it is handed)."""

    spec = ModelSpec(backend="hf", model="human-mirror")

    def __init__(self, scores: list[list[dict[str, int]]]) -> None:
        self.scores, self.asked = scores, 0

    def identity(self) -> dict:
        return {"judge": "human-mirror"}

    def generate(self, requests, *, progress=False):
        out = []
        for _ in requests:
            sides = self.scores[self.asked]
            self.asked += 1
            obj = {key: {d: {"reasoning": "as the humans", "score": s} for d, s in side.items()}
                   for key, side in zip(("agent_1", "agent_2"), sides, strict=True)}
            out.append(LLMResponse(text=json.dumps(obj), parsed=obj))
        return out


def test_judge_vs_human_path_with_a_scripted_judge(release, episodes, tmp_path):
    # leave-ending episodes only until judge/prompt.py can state a "released" ending (see
    # test_sim_human_eval's xfail): the judge prompt names how the conversation ended
    ended = [e for e in episodes if e.end_reason == "leave"]
    chosen = select_released(ended, HumanEvalConfig(episodes_per_model=2))
    table = released_rating_table(release)
    means = table.groupby(["episode_id", "agent", "dimension"])["score"].mean()
    scores = [[{d.name: round(means[(e.episode_id, a, d.name)]) for d in DIMENSIONS} for a in (0, 1)] for e in chosen]
    judge = HumanMirror(scores)
    ratings = judge_released(chosen, judge, tmp_path / "r.jsonl", JudgeConfig(reasoning_max_chars=16), progress=False)
    assert [r.episode_id for r in ratings] == [e.episode_id for e in chosen] and judge.asked == len(chosen)
    assert judge_released(chosen, judge, tmp_path / "r.jsonl", JudgeConfig(reasoning_max_chars=16), progress=False) == ratings
    assert judge.asked == len(chosen)  # resumed from the store, nothing asked again
    frame = judge_frame(ratings, release)["hf:human-mirror"]
    vs = judge_vs_human(frame, table, "hf:human-mirror").set_index("dimension")
    assert vs.loc["goal", "n"] == 2 * len(chosen) and vs.loc["goal", "pearson"] > 0.95
    gap = judge_goal_gap(frame, table, "hf:human-mirror")
    assert list(gap["model"]) == list(RELEASED_MODELS) and (gap["gap"].abs() <= 0.5).all()
