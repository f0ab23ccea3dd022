"""Rating records: parsing the judge's JSON, the append-only store with resume, the join with episodes."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.judge import (
    DIMENSIONS,
    RUBRIC_VERSION,
    AgentRating,
    EpisodeRating,
    RatingStore,
    join_ratings,
    parse_judgement,
)
from sotopia_pi_lib.sim.episode import AgentAction, EpisodeRecord, Turn


def judgement(shift: int = 0) -> dict:
    """A judge output with every score in range (each dimension's low end, raised by `shift`)."""

    def agent(k: int) -> dict:
        return {
            d.name: {"reasoning": f"{d.name} of agent {k}", "score": min(d.high, d.low + shift + k)}
            for d in DIMENSIONS
        }

    return {"agent_1": agent(0), "agent_2": agent(1)}


def rating(episode_id: str, judge: str = "hf:embedded", sample: int = 0, shift: int = 0) -> EpisodeRating:
    agents = parse_judgement(judgement(shift), "test")
    return EpisodeRating(
        episode_id=episode_id, judge=judge, rubric_version=RUBRIC_VERSION, sample_index=sample,
        temperature=0.0, agents=agents,
    )  # fmt: skip


def episode(episode_id: str) -> EpisodeRecord:
    turn = Turn(index=0, agent=0, action=AgentAction(action_type="leave"), raw='{"action_type": "leave"}')
    return EpisodeRecord(
        episode_id=episode_id, env_id="env", scenario="Two friends meet.", agent_ids=("a", "b"),
        agent_names=("Ann Lee", "Bo Chan"), goals=("g1", "g2"), models=("m", "m"), prompt_version="v",
        seed=0, turns=[turn], end_reason="leave",
    )  # fmt: skip


def test_parse_judgement_computes_overall_as_mean_of_seven():
    a1, a2 = parse_judgement(judgement(shift=2), "ep")
    for a in (a1, a2):
        assert list(a.dimensions) == [d.name for d in DIMENSIONS]
        assert a.overall == pytest.approx(sum(a.scores.values()) / 7)
    assert a1.dimensions["goal"].reasoning == "goal of agent 0"
    assert a2.scores["secret"] == -10 + 2 + 1


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda j: j.pop("agent_2"), "must have keys"),
        (lambda j: j["agent_1"].pop("goal"), "missing dimensions \\['goal'\\]"),
        (lambda j: j["agent_1"]["goal"].update(score=11), "goal = 11"),
        (lambda j: j["agent_2"]["secret"].update(score=1), "secret = 1"),
        (lambda j: j["agent_1"]["knowledge"].update(score=4.0), "integer score"),
        (lambda j: j["agent_1"]["knowledge"].update(score=True), "integer score"),
        (lambda j: j["agent_1"].update(charm={"reasoning": "", "score": 1}), "charm"),
        (lambda j: j["agent_1"]["goal"].pop("reasoning"), "reasoning and score"),
    ],
)
def test_parse_judgement_rejects_bad_output_naming_where(mutate, message):
    j = judgement()
    mutate(j)
    with pytest.raises(DataError, match=message) as e:
        parse_judgement(j, "judge X on episode ep-7")
    assert "episode ep-7" in str(e.value)


def test_agent_rating_rejects_an_overall_that_is_not_the_mean():
    good = parse_judgement(judgement(), "ep")[0]
    with pytest.raises(ValidationError, match="not the mean"):
        AgentRating(dimensions=good.dimensions, overall=good.overall + 0.5)
    with pytest.raises(ValidationError, match="goal = 42"):
        AgentRating.model_validate(
            {
                **good.model_dump(),
                "dimensions": {**good.model_dump()["dimensions"], "goal": {"reasoning": "", "score": 42}},
            }
        )


def test_store_resume_writes_no_duplicates_and_survives_a_torn_line(tmp_path):
    store = RatingStore(tmp_path / "ratings.jsonl")
    assert store.extend([rating("e1"), rating("e2")]) == 2
    # a re-run offers the same two again plus a new sample and a new judge: only the new ones are written
    assert (
        store.extend([rating("e1"), rating("e2"), rating("e1", sample=1), rating("e1", judge="openai:gpt-4")])
        == 2
    )
    assert len((tmp_path / "ratings.jsonl").read_text().splitlines()) == 4
    with open(store.path, "a") as f:
        f.write('{"episode_id": "e3", "judge": "hf:emb')  # a crash mid-write
    fresh = RatingStore(store.path)
    got = fresh.records()
    assert [tuple(r.key)[:2] for r in got] == [("e1", "hf:embedded"), ("e2", "hf:embedded"), ("e1", "hf:embedded"),
                                               ("e1", "openai:gpt-4")]  # fmt: skip
    assert got[0] == rating("e1")
    assert fresh.extend([rating("e3")]) == 1
    assert len(fresh.records()) == 5


def test_store_ignores_duplicate_lines_with_a_warning_and_rejects_a_corrupt_middle_line(tmp_path, caplog):
    path = tmp_path / "ratings.jsonl"
    line = rating("e1").model_dump_json() + "\n"
    path.write_text(line + line)
    with caplog.at_level(logging.WARNING):
        assert len(RatingStore(path).records()) == 1
    assert "duplicate rating" in caplog.text
    path.write_text(line + "{not json}\n" + rating("e2").model_dump_json() + "\n")
    with pytest.raises(DataError, match="ratings.jsonl:2"):
        RatingStore(path).records()


def test_rubric_version_is_part_of_the_key():
    old = rating("e1").model_copy(update={"rubric_version": "older"})
    assert old.key != rating("e1").key


def test_join_reports_unrated_episodes_and_ratings_of_unknown_episodes(caplog):
    episodes = [episode("e1"), episode("e2"), episode("e3")]
    ratings = [rating("e1"), rating("e1", sample=1), rating("e3"), rating("ghost")]
    with pytest.raises(DataError) as e:
        join_ratings(episodes, ratings)
    assert "1 episodes without ratings (e.g. e2)" in str(e.value)
    assert "1 ratings of unknown episodes (e.g. ghost)" in str(e.value)
    with caplog.at_level(logging.WARNING):
        joined = join_ratings(episodes, ratings, strict=False)
    assert "e2" in caplog.text and "ghost" in caplog.text
    assert joined.unrated == ["e2"] and [r.episode_id for r in joined.orphans] == ["ghost"]
    assert [(e.episode_id, len(r)) for e, r in joined.pairs] == [("e1", 2), ("e3", 1)]
    assert not joined.complete


def test_join_complete_and_filtered_by_rubric_version():
    episodes = [episode("e1")]
    ratings = [rating("e1"), rating("e1").model_copy(update={"rubric_version": "older"})]
    joined = join_ratings(episodes, ratings, rubric_version=RUBRIC_VERSION)
    assert joined.complete and len(joined.pairs[0][1]) == 1
    with pytest.raises(DataError, match="without ratings"):
        join_ratings(episodes, ratings, rubric_version="newer")


def test_read_rated_episodes_from_run_files(tmp_path):
    from sotopia_pi_lib.judge import read_rated_episodes
    from sotopia_pi_lib.sim.episode_store import EpisodeStore

    episodes = EpisodeStore(tmp_path / "episodes.jsonl")
    for eid in ("e1", "e2"):
        episodes.append(episode(eid))
    with pytest.raises(DataError, match="no ratings file"):
        read_rated_episodes(episodes.path, tmp_path / "ratings.jsonl")
    RatingStore(tmp_path / "ratings.jsonl").extend([rating("e1"), rating("e2"), rating("e2", sample=1)])
    joined = read_rated_episodes(episodes.path, tmp_path / "ratings.jsonl")
    assert [(e.episode_id, len(r)) for e, r in joined.pairs] == [("e1", 1), ("e2", 2)]
