"""The released human evaluation as typed records: the whole release, its quirks, and each bad input
named by file, line and column (fixtures: two real rows of mistral-instruct_final.csv and their edits)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sotopia_pi_lib.data import fetch as fetch_mod
from sotopia_pi_lib.data.fetch import Source, fetch_file, rebuild_episode_models
from sotopia_pi_lib.data.human_eval import (
    HUMAN_DIMENSIONS,
    load_human_eval,
    read_episode_models,
    read_gpt4_scores,
    read_human_eval_csv,
)
from sotopia_pi_lib.data.sources import EPISODE_MODELS, HUMAN_EVAL_CSVS, HUMAN_EVAL_DIR, SOTOPIA_FILES
from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.judge.rubric import DIMENSIONS
from sotopia_pi_lib.paths import shared_data_dir

FIXTURES = Path(__file__).parent / "fixtures" / "human_eval"
PK = "01HNBEX1CAAMK0YQ7M1ZZ6BHS4"


@pytest.fixture(scope="module")
def release():
    return load_human_eval()


@pytest.fixture
def model_map():
    return read_episode_models(FIXTURES / "episode_models.jsonl")


def test_the_whole_release_and_its_quirks(release):
    assert len(release.ratings) == 309 and len(release.views) == len(release.episodes) == 154
    assert release.models == list(HUMAN_EVAL_CSVS)
    per_model = {m: len({r.pk for r in release.ratings if r.model == m}) for m in release.models}
    assert per_model == {"mistral-7b": 28, "sr": 28, "bc": 28, "bc+sr": 28, "gpt-4": 28, "gpt-3.5": 14}
    scenario_only = sorted(pk for pk, v in release.views.items() if not v.has_transcript)
    assert scenario_only == ["01HB44THFBJFQPXRV92P8ZAMM5", "01HP5M3WNQDWP9VKDD5FH43FNB", "01HP5MWA6Q6X4E27M9QMRAKHBW"]
    rows_per_episode = [sum(r.pk == pk for r in release.ratings) for pk in release.views]
    assert sorted(set(rows_per_episode)) == [2, 3] and rows_per_episode.count(3) == 1
    # GPT-4's released scores cover SOTOPIA's 140 episodes, 28 of them the GPT-4 episodes here
    gpt4_pks = {r.pk for r in release.ratings if r.model == "gpt-4"}
    assert len(release.gpt4) == 140 and len(gpt4_pks & set(release.gpt4)) == 28


def test_tested_side_is_the_one_that_is_not_the_partner(release):
    seats = {m: set() for m in release.models}
    for pk, e in release.episodes.items():
        seats[release.model_of(pk)].add(e.tested_positions)
    assert seats["gpt-3.5"] == {(0, 1)}
    assert all(seats[m] == {(0,), (1,)} for m in release.models if m != "gpt-3.5")
    gpt4 = [e for pk, e in release.episodes.items() if release.model_of(pk) == "gpt-4"]
    assert all(e.models[e.tested_positions[0] + 1] == "gpt-4" for e in gpt4)


def test_score_scale_is_the_judges():
    assert {d.name: (d.low, d.high) for d in DIMENSIONS} == HUMAN_DIMENSIONS


def test_fixture_rows_read(model_map):
    ratings, views = read_human_eval_csv(FIXTURES / "mistral-instruct_final.csv", "mistral-7b", model_map)
    assert [r.where for r in ratings] == ["mistral-instruct_final.csv, line 2", "mistral-instruct_final.csv, line 3"]
    assert {r.pk for r in ratings} == {PK} and views[PK].has_transcript
    assert all(0 <= r.agents[a]["goal"].score <= 10 for r in ratings for a in (0, 1))


@pytest.mark.parametrize(("fixture", "message"), [
    ("missing_column.csv", r"missing_column\.csv, line 1, column goal_2: missing column"),
    ("score_out_of_range.csv", r"score_out_of_range\.csv, line 3, column goal_1: score 11 is outside goal's range \[0, 10\]"),
    ("unknown_episode.csv", r"unknown_episode\.csv, line 3, column pk: episode '01HNBEX1CAAMK0YQ7M1ZZ6BHS5' is not in the model map"),
    ("broken_data.csv", r"broken_data\.csv, line 2, column data: not valid JSON"),
])
def test_bad_input_names_file_line_and_column(model_map, fixture, message):
    with pytest.raises(DataError, match=message):
        read_human_eval_csv(FIXTURES / fixture, "mistral-7b", model_map)


def test_more_bad_input(model_map, tmp_path):
    good = (FIXTURES / "mistral-instruct_final.csv").read_text(encoding="utf-8")
    wrong_file = tmp_path / "x.csv"
    wrong_file.write_text(good, encoding="utf-8")
    with pytest.raises(DataError, match=r"x\.csv, line 2, column pk: .*study folder 'GPT3.5-MistralInstruct'.*bc file"):
        read_human_eval_csv(wrong_file, "bc", model_map)  # an episode in another model's file
    not_a_view = tmp_path / "y.csv"
    not_a_view.write_text(good.replace('"{""scenario""', '"{""scenery""', 1), encoding="utf-8")
    with pytest.raises(DataError, match=r"y\.csv, line 2, column data: not the annotation app's episode view"):
        read_human_eval_csv(not_a_view, "mistral-7b", model_map)
    twice = tmp_path / "episode_models.jsonl"
    twice.write_text((FIXTURES / "episode_models.jsonl").read_text() * 2)
    with pytest.raises(DataError, match=r"episode_models\.jsonl:2: episode .* is listed twice"):
        read_episode_models(twice)
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({PK: {"env_pk": "e", "agent1": {**dict.fromkeys(HUMAN_DIMENSIONS, 0.0),
                                                                   "goal": 11.0, "overall_score": 11 / 7},
                                       "agent2": {}}}))
    with pytest.raises(DataError, match=r"scores\.json, episode .*, agent1\.goal: 11\.0 is outside \[0, 10\]"):
        read_gpt4_scores(scores)


def _per_episode_files() -> dict[str, bytes]:
    """What the public per-episode files hold for the fields episode_models keeps (served offline)."""
    out = {}
    for line in (shared_data_dir() / EPISODE_MODELS).read_text().splitlines():
        e = json.loads(line)
        url = fetch_mod.episode_file_url(e["study_folder"], e["pk"])
        out[url] = json.dumps({"pk": e["pk"], "environment": e["environment_pk"], "tag": e["tag"],
                               "models": e["models"], "rewards_prompt": "..."}).encode()
    return out


def test_episode_models_rebuilds_to_the_pinned_checksum(monkeypatch, tmp_path):
    files = _per_episode_files()
    csvs = {name: (shared_data_dir() / HUMAN_EVAL_DIR / name).read_bytes() for name, _ in HUMAN_EVAL_CSVS.values()}
    rebuilt = rebuild_episode_models(csvs, files.__getitem__)
    assert hashlib.sha256(rebuilt).hexdigest() == SOTOPIA_FILES[EPISODE_MODELS].sha256
    # through the resolver: no folder has it, so the public source rebuilds it
    monkeypatch.setattr(fetch_mod, "_download", files.__getitem__)
    path = fetch_file(SOTOPIA_FILES[EPISODE_MODELS], tmp_path / "dest", _csvs_only(tmp_path))
    assert path.read_bytes() == rebuilt


def _csvs_only(tmp_path: Path) -> list[Source]:
    folder = tmp_path / "csvs"
    (folder / HUMAN_EVAL_DIR).mkdir(parents=True)
    for name, _ in HUMAN_EVAL_CSVS.values():
        (folder / HUMAN_EVAL_DIR / name).write_bytes((shared_data_dir() / HUMAN_EVAL_DIR / name).read_bytes())
    return [Source("csvs", folder), Source("public URLs", None)]


def test_a_rebuild_that_differs_is_a_checksum_error(monkeypatch, tmp_path):
    files = _per_episode_files()
    url = next(iter(files))
    files[url] = files[url].replace(b'"tag": "', b'"tag": "changed-')
    monkeypatch.setattr(fetch_mod, "_download", files.__getitem__)
    with pytest.raises(DataError, match=r"checksum mismatch for sotopia_pi/human_eval/episode_models\.jsonl "
                                        r"from public URLs \(rebuilt from the public per-episode files\)"):
        fetch_file(SOTOPIA_FILES[EPISODE_MODELS], tmp_path / "dest", _csvs_only(tmp_path))
