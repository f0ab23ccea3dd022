"""Judging episodes: with the real embedded model every score lies in range and overall is the mean;
resume, several samples, several judges and failed judgements behave as documented."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from sotopia_pi_lib.errors import ConfigError
from sotopia_pi_lib.judge import (
    DIMENSIONS,
    RUBRIC_VERSION,
    EpisodeRating,
    RatingStore,
    judge_episodes,
    judge_temperature,
    parse_judgement,
    summarize_samples,
)
from sotopia_pi_lib.judge.rate import rubric_version_for
from sotopia_pi_lib.llm.base import LLM
from sotopia_pi_lib.llm.types import LLMRequest, LLMResponse, ModelSpec
from sotopia_pi_lib.sim.episode import AgentAction, EpisodeRecord, Turn

# Short reasoning keeps the real-model tests fast (the 135M judge spends most of its time writing it);
# the schema, ranges and parsing are the same as under the default cap.
CAP = 24
SCRIPTS = json.loads((Path(__file__).parent / "fixtures" / "judge_episode_scripts.json").read_text())


def scripted_episode(sotopia, script: dict) -> EpisodeRecord:
    """A hand-written conversation on a real SOTOPIA benchmark combo (profiles looked up by id)."""
    combo = sotopia.combos[script["combo_index"]]
    env = sotopia.environments[combo.env_id]
    names = tuple(sotopia.agents[a].name for a in combo.agent_ids)
    turns = [
        Turn(index=i, agent=i % 2, action=AgentAction(action_type=t, argument=a), raw="")
        for i, (t, a) in enumerate(script["turns"])
    ]
    return EpisodeRecord(
        episode_id=f"{env.codename}-{combo.combo_id}", env_id=env.env_id, combo_id=combo.combo_id,
        codename=env.codename, scenario=env.scenario, agent_ids=combo.agent_ids, agent_names=names,
        goals=env.agent_goals, models=("hf:embedded",) * 2, prompt_version="sotopia-pi-lib/v2",
        seed=script["combo_index"], turns=turns, end_reason=script["end_reason"], relationship=env.relationship,
    )  # fmt: skip


def assert_valid(rating: EpisodeRating) -> None:
    for agent in rating.agents:
        assert list(agent.dimensions) == [d.name for d in DIMENSIONS]
        for d in DIMENSIONS:
            assert d.low <= agent.dimensions[d.name].score <= d.high, (d.name, agent.dimensions[d.name])
            assert isinstance(agent.dimensions[d.name].reasoning, str)
        assert agent.overall == pytest.approx(sum(agent.scores.values()) / 7, abs=1e-12)


def test_temperature_rules():
    assert judge_temperature(1, None) == 0.0  # the paper's greedy judge
    assert judge_temperature(3, None) > 0.0
    assert judge_temperature(3, 0.5) == 0.5
    with pytest.raises(ConfigError, match="identical"):
        judge_temperature(3, 0.0)
    with pytest.raises(ConfigError, match=">= 1"):
        judge_temperature(0, None)


def test_summarize_samples_gives_mean_and_spread_per_judge():
    def r(judge, sample, base):
        obj = {k: {d.name: {"reasoning": "", "score": max(d.low, min(d.high, base))} for d in DIMENSIONS}
               for k in ("agent_1", "agent_2")}  # fmt: skip
        return EpisodeRating(episode_id="e", judge=judge, rubric_version=RUBRIC_VERSION, sample_index=sample,
                             temperature=1.0, agents=parse_judgement(obj, "t"))  # fmt: skip

    summaries = summarize_samples([r("a", 0, 2), r("a", 1, 4), r("a", 2, 6), r("b", 0, 9)])
    by_judge = {s.judge: s for s in summaries}
    goal = by_judge["a"].agents[0].dimensions["goal"]
    assert (goal.mean, goal.std, goal.n) == (4.0, 2.0, 3)
    assert by_judge["a"].samples == 3 and by_judge["b"].samples == 1
    assert by_judge["b"].agents[1].dimensions["goal"].std == 0.0
    assert by_judge["a"].agents[0].overall.mean == pytest.approx(sum(x.agents[0].overall for x in
                                                                     [r("a", 0, 2), r("a", 1, 4), r("a", 2, 6)]) / 3)  # fmt: skip


class ShortBudget(LLM):
    """The real model with a token budget too small for a judgement: its outputs cannot be complete."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.spec = ModelSpec(backend="hf", model="embedded", adapter="short-budget")
        self.calls = 0

    def identity(self) -> dict:
        return self.inner.identity()

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        self.calls += 1
        short = [
            r.model_copy(update={"sampling": r.sampling.model_copy(update={"max_tokens": 12})})
            for r in requests
        ]
        return self.inner.generate(short, progress=progress)


@pytest.fixture(scope="module")
def judge(embedded_model_dir):
    from sotopia_pi_lib.llm.registry import build_llm

    llm = build_llm(ModelSpec(backend="hf", model="embedded"), cache=None)
    yield llm
    llm.close()


@pytest.mark.model
def test_embedded_judge_scores_in_range_overall_is_mean_and_resume_skips(sotopia, judge, tmp_path, capsys):
    episodes = [scripted_episode(sotopia, s) for s in SCRIPTS]
    store = RatingStore(tmp_path / "ratings.jsonl")
    ratings = judge_episodes(episodes, judge, agents=sotopia.agents, store=store, reasoning_max_chars=CAP)
    assert [r.episode_id for r in ratings] == [e.episode_id for e in episodes]
    for r in ratings:
        assert_valid(r)
        assert (r.judge, r.rubric_version, r.sample_index, r.temperature) == (
            "hf:embedded",
            rubric_version_for(CAP),
            0,
            0.0,
        )
        assert r.completion_tokens > 0
    assert store.records() == ratings
    print(f"judged {len(ratings)} episodes, {sum(r.completion_tokens for r in ratings)} completion tokens")

    class Refuse(LLM):  # a resumed run must not ask the same judge again
        spec = judge.spec

        def identity(self):
            return judge.identity()

        def generate(self, requests, *, progress=False):
            raise AssertionError(f"asked to generate {len(requests)} judgements that were already stored")

    again = judge_episodes(episodes, Refuse(), agents=sotopia.agents, store=store, reasoning_max_chars=CAP)
    assert again == ratings
    assert len(store.path.read_text().splitlines()) == len(episodes)
    assert "0 new, 3 already rated, 0 failed" in capsys.readouterr().out


@pytest.mark.model
def test_failed_judgements_are_reported_not_stored_and_retried(sotopia, judge, tmp_path, capsys):
    episodes = [scripted_episode(sotopia, SCRIPTS[1])]
    store = RatingStore(tmp_path / "ratings.jsonl")
    short = ShortBudget(judge)
    assert judge_episodes(episodes, short, agents=sotopia.agents, store=store) == []
    assert "0 new, 0 already rated, 1 failed" in capsys.readouterr().out
    assert store.records() == []
    assert judge_episodes(episodes, short, agents=sotopia.agents, store=store) == []
    assert short.calls == 2  # nothing was stored, so the re-run asked again


class RuleOfThumbJudge(LLM):
    """A second judge that is not a language model: it answers every dimension with a fixed score,
    sample-dependent, so the bookkeeping of judges and samples is checked without a second slow model."""

    spec = ModelSpec(backend="hf", model="rule-of-thumb")

    def identity(self) -> dict:
        return {"judge": "rule-of-thumb"}

    def generate(self, requests, *, progress=False):
        out = []
        for r in requests:
            obj = {k: {d.name: {"reasoning": "fixed", "score": d.high if r.sample_index else d.low}
                       for d in DIMENSIONS} for k in ("agent_1", "agent_2")}  # fmt: skip
            out.append(LLMResponse(text=json.dumps(obj), parsed=obj, completion_tokens=1))
        return out


@pytest.mark.model
def test_samples_and_several_judges_are_kept_apart(sotopia, judge):
    episodes = [scripted_episode(sotopia, SCRIPTS[0])]
    other = RuleOfThumbJudge()
    # a low temperature: samples may differ, but a 135M model at 1.0 rambles to the length limit (slow)
    ratings = judge_episodes(episodes, [judge, other], agents=sotopia.agents, samples=2, temperature=0.3,
                             reasoning_max_chars=CAP)
    assert sorted((r.judge, r.sample_index) for r in ratings) == sorted(
        (label, s) for label in ("hf:embedded", "hf:rule-of-thumb") for s in (0, 1)
    )
    for r in ratings:
        assert_valid(r)
        assert r.temperature == 0.3
    summaries = {s.judge: s for s in summarize_samples(ratings)}
    assert len(summaries) == 2 and all(s.samples == 2 for s in summaries.values())
    mine = [r for r in ratings if r.judge == "hf:embedded"]
    goal = [r.agents[1].scores["goal"] for r in mine]
    assert summaries["hf:embedded"].agents[1].dimensions["goal"].mean == pytest.approx(sum(goal) / 2)
    fixed = summaries["hf:rule-of-thumb"].agents[0].dimensions["goal"]
    assert (fixed.mean, fixed.n) == (5.0, 2) and fixed.std == pytest.approx(50**0.5)  # scored 0 and 10
