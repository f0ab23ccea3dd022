"""The episode store: resumable episode JSONL with a failures side file."""

from __future__ import annotations

import logging

import pytest

from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.sim import AgentAction, EpisodeFailure, EpisodeRecord, EpisodeStore, Turn


def record(eid: str) -> EpisodeRecord:
    turn = Turn(index=0, agent=0, action=AgentAction(action_type="leave"), raw='{"action_type": "leave"}')
    return EpisodeRecord(
        episode_id=eid, env_id="env", scenario="s", agent_ids=("a", "b"), agent_names=("A", "B"),
        goals=("g1", "g2"), models=("m", "m"), prompt_version="v", seed=0, turns=[turn], end_reason="leave",
    )  # fmt: skip


def test_append_read_and_completed_ids(tmp_path):
    store = EpisodeStore(tmp_path / "episodes.jsonl")
    assert store.records() == [] and store.completed_ids() == set()
    for eid in ("e1", "e2"):
        store.append(record(eid))
    again = EpisodeStore(tmp_path / "episodes.jsonl")
    assert [r.episode_id for r in again.records()] == ["e1", "e2"]
    assert again.completed_ids() == {"e1", "e2"} and len(again) == 2
    assert again.records()[0] == record("e1")


def test_torn_last_episode_dropped_on_open(tmp_path, caplog):
    path = tmp_path / "episodes.jsonl"
    EpisodeStore(path).append(record("e1"))
    line = record("e2").model_dump_json().encode()
    with open(path, "ab") as f:
        f.write(line[: len(line) // 2])
    store = EpisodeStore(path)
    with caplog.at_level(logging.WARNING):
        assert store.completed_ids() == {"e1"}
    assert "torn last line" in caplog.text
    store.append(record("e2"))
    assert EpisodeStore(path).completed_ids() == {"e1", "e2"}


def test_malformed_middle_line_is_an_error(tmp_path):
    path = tmp_path / "episodes.jsonl"
    store = EpisodeStore(path)
    store.append(record("e1"))
    with open(path, "a") as f:
        f.write('{"episode_id": "broken"}\n')
    store.append(record("e3"))
    with pytest.raises(DataError, match=r"episodes.jsonl:2: not a valid EpisodeRecord"):
        EpisodeStore(path).completed_ids()


def test_duplicate_episode_kept_once(tmp_path, caplog):
    store = EpisodeStore(tmp_path / "episodes.jsonl")
    store.append(record("e1"))
    store.append(record("e1"))
    with caplog.at_level(logging.WARNING):
        assert [r.episode_id for r in store.records()] == ["e1"]
    assert "duplicate episode e1" in caplog.text


def test_failures_side_file(tmp_path):
    store = EpisodeStore(tmp_path / "episodes.jsonl")
    failure = EpisodeFailure(
        episode_id="e9", env_id="env", agent_ids=("a", "b"), models=("m", "m"), turn=3, error="x"
    )
    store.append_failure(failure)
    assert store.failures_path.name == "episodes.failures.jsonl"
    assert EpisodeStore(tmp_path / "episodes.jsonl").failures() == [failure]
    assert store.completed_ids() == set()
