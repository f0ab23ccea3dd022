"""Export to sotopia's EpisodeLog JSON shape: checked against the field set always, and against
sotopia's own model in the official environment (`make sotopia`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.judge import DIMENSIONS, RUBRIC_VERSION, EpisodeRating, parse_judgement
from sotopia_pi_lib.judge.export import export_episode_logs, to_episode_log
from sotopia_pi_lib.judge.prompt import judge_prompt_text
from sotopia_pi_lib.official import official_available, run_official
from sotopia_pi_lib.sim.episode import AgentAction, EpisodeRecord, Turn

SCRIPTS = json.loads((Path(__file__).parent / "fixtures" / "judge_episode_scripts.json").read_text())

# sotopia.database.logs.BaseEpisodeLog in sotopia 0.1.5 (PyPI wheel) and sotopia-lab/sotopia main:
# every field an export must carry, and nothing else (EpisodeLog(**line) must accept it).
EPISODE_LOG_FIELDS = {"pk", "environment", "agents", "tag", "models", "messages", "reasoning", "rewards",
                      "rewards_prompt"}  # fmt: skip


def scripted_episode(sotopia, script: dict) -> EpisodeRecord:
    combo = sotopia.combos[script["combo_index"]]
    env = sotopia.environments[combo.env_id]
    people = tuple(sotopia.agents[a] for a in combo.agent_ids)
    turns = [
        Turn(index=i, agent=i % 2, action=AgentAction(action_type=t, argument=a), raw="")
        for i, (t, a) in enumerate(script["turns"])
    ]
    return EpisodeRecord(
        episode_id=f"{env.codename}-{combo.combo_id}", env_id=env.env_id, combo_id=combo.combo_id,
        codename=env.codename, scenario=env.scenario, agent_ids=combo.agent_ids,
        agent_names=(people[0].name, people[1].name), goals=env.agent_goals,
        models=("hf:embedded", "openai:gpt-3.5-turbo"), prompt_version="sotopia-pi-lib/v2", seed=0,
        turns=turns, end_reason=script["end_reason"], tags={"source": "bc", "round": "1"},
        relationship=env.relationship,
    )  # fmt: skip


def rating(record: EpisodeRecord, base: int, judge: str = "hf:embedded", sample: int = 0) -> EpisodeRating:
    obj = {
        key: {d.name: {"reasoning": f"{d.name} of {key}", "score": max(d.low, min(d.high, base + k))}
              for d in DIMENSIONS}
        for k, key in enumerate(("agent_1", "agent_2"))
    }  # fmt: skip
    return EpisodeRating(
        episode_id=record.episode_id, judge=judge, rubric_version=RUBRIC_VERSION, sample_index=sample,
        temperature=0.0, agents=parse_judgement(obj, "test"),
    )  # fmt: skip


@pytest.fixture
def exported(sotopia, tmp_path):
    episodes = [scripted_episode(sotopia, s) for s in SCRIPTS]
    ratings = [rating(e, 3) for e in episodes] + [rating(episodes[0], 5, sample=1)]
    path = export_episode_logs(
        episodes, ratings, tmp_path / "episodes.sotopia.jsonl", agents=sotopia.agents,
        rewards_prompt=lambda r: judge_prompt_text(r, sotopia.agents),
    )  # fmt: skip
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return episodes, lines, path


def test_export_has_exactly_episode_log_fields_and_types(exported):
    episodes, lines, _ = exported
    assert len(lines) == len(episodes)
    for record, log in zip(episodes, lines, strict=True):
        assert set(log) == EPISODE_LOG_FIELDS
        assert log["pk"] == record.episode_id and log["environment"] == record.env_id
        assert log["agents"] == list(record.agent_ids)
        assert log["models"] == [
            "hf:embedded",
            "hf:embedded",
            "openai:gpt-3.5-turbo",
        ]  # evaluator, agent 1, 2
        assert log["tag"] == "round=1,source=bc"
        assert all(isinstance(s, str) for step in log["messages"] for m in step for s in m)
        assert all(len(m) == 3 for step in log["messages"] for m in step)
        assert record.scenario in log["rewards_prompt"]
        assert log["reasoning"].startswith("Agent 1 comments:\nbelievability: believability of agent_1")


def test_messages_follow_sotopias_step_layout(exported):
    episodes, lines, _ = exported
    record, log = episodes[1], lines[1]  # the stale episode: ends with two 'none' turns
    names = record.agent_names
    steps = log["messages"]
    assert len(steps) == len(record.turns) + 1
    intro = steps[0][:2]
    assert [(s, r) for s, r, _ in intro] == [("Environment", names[0]), ("Environment", names[1])]
    assert "Conversation Starts" in intro[0][2]
    for step, turn in zip(steps, record.turns, strict=False):
        actors = step[-2:]
        assert [(s, r) for s, r, _ in actors] == [(names[0], "Environment"), (names[1], "Environment")]
        idle = actors[1 - turn.agent][2]
        assert idle == "did nothing"
    assert steps[0][2][2] == 'said: "Noah, I\'m freezing. Could we share the blanket tonight?"'
    assert steps[2][2][2] == "[non-verbal communication] shivers and rubs his arms"
    assert steps[2][0][2].startswith("Turn #1: " + names[1] + " said: \"I'm cold too")
    assert steps[-1][0][2] == "Turn #6: \n"  # the last turn did nothing: the environment reports nothing


def test_intro_shows_own_secret_and_goal_only(exported, sotopia):
    episodes, lines, _ = exported
    record, log = episodes[0], lines[0]
    p0, p1 = (sotopia.agents[a] for a in record.agent_ids)
    intro0, intro1 = log["messages"][0][0][2], log["messages"][0][1][2]
    assert p0.secret in intro0 and p0.secret not in intro1
    assert p1.secret in intro1 and p1.secret not in intro0
    assert f"{p1.name}'s goal: Unknown" in intro0 and f"{p0.name}'s goal: Unknown" in intro1


def test_rewards_average_samples_and_carry_overall(exported):
    _, lines, _ = exported
    rewards = lines[0]["rewards"]  # samples at base 3 and 5
    assert len(rewards) == 2
    overall, scores = rewards[0]
    assert set(scores) == {d.name for d in DIMENSIONS} | {"overall_score"}
    assert scores["goal"] == 4.0 and scores["relationship"] == 4.0 and scores["secret"] == 0.0
    assert overall == pytest.approx(sum(v for k, v in scores.items() if k != "overall_score") / 7)
    assert scores["overall_score"] == overall


def test_unrated_and_ambiguous_exports_are_errors(sotopia):
    record = scripted_episode(sotopia, SCRIPTS[2])
    with pytest.raises(DataError, match="has no ratings"):
        to_episode_log(record, [], agents=sotopia.agents)
    bare = to_episode_log(record, [], agents=sotopia.agents, allow_unrated=True)
    assert bare.rewards == [0.0, 0.0] and bare.models[0] == ""
    two = [rating(record, 1), rating(record, 6, judge="openai:gpt-4")]
    with pytest.raises(DataError, match="choose one with judge="):
        to_episode_log(record, two, agents=sotopia.agents)
    picked = to_episode_log(record, two, agents=sotopia.agents, judge="openai:gpt-4")
    assert picked.models[0] == "openai:gpt-4" and picked.rewards[0][1]["goal"] == 6.0
    with pytest.raises(DataError, match="no agent_profiles"):
        to_episode_log(record, two, judge="openai:gpt-4")


def test_export_validates_against_sotopias_episode_log(exported):
    """The official EpisodeLog model (sotopia 0.0.6, out of process) accepts every exported line."""
    if not official_available():
        pytest.skip("run `make sotopia` first")
    _, lines, path = exported
    out = run_official("check_episode_logs", {"lines": path.read_text().splitlines()})
    assert out["errors"] == [None] * len(lines)
    for line, parsed in zip(lines, out["parsed"], strict=True):
        assert parsed["pk"] == line["pk"] and parsed["rewards"][0][1]["goal"] == line["rewards"][0][1]["goal"]
        assert parsed["messages"] == line["messages"]
    broken = json.loads(path.read_text().splitlines()[0]) | {"rewards": [1.0]}  # one reward for two agents
    assert "do not match" in run_official("check_episode_logs", {"lines": [json.dumps(broken)]})["errors"][0]
