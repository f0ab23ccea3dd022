"""The released human evaluation as typed records: the whole release, its quirks, and each bad input
named by file, line and column. The bad inputs are two real rows of mistral-instruct_final.csv, copied
from the data folder at test time (nothing of the release is committed) and then edited."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from sotopia_pi_lib.data import fetch as fetch_mod
from sotopia_pi_lib.data.fetch import Source, fetch_file, rebuild_derived
from sotopia_pi_lib.data.human_eval import (
    HUMAN_DIMENSIONS,
    load_human_eval,
    read_episode_models,
    read_gpt4_scores,
    read_human_eval_csv,
)
from sotopia_pi_lib.data.sources import (
    EPISODE_MODELS,
    HUMAN_EVAL_CSVS,
    HUMAN_EVAL_DIR,
    OFFICIAL_RENDERINGS,
    SOTOPIA_FILES,
)
from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.judge.rubric import DIMENSIONS
from sotopia_pi_lib.paths import data_dir, shared_data_dir

PK = "01HNBEX1CAAMK0YQ7M1ZZ6BHS4"


def _write(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory, release) -> Path:
    """The header and episode PK's two annotator rows (file lines 1-3), as given and with one fault each."""
    folder = tmp_path_factory.mktemp("human_eval")
    with open(data_dir() / HUMAN_EVAL_DIR / "mistral-instruct_final.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    head, good = rows[0], [r for r in rows if r[2] == PK]
    assert len(good) == 2
    col = head.index
    _write(folder / "mistral-instruct_final.csv", [head, *good])
    _write(folder / "missing_column.csv", [[v for j, v in enumerate(r) if j != col("goal_2")] for r in [head, *good]])
    _write(folder / "score_out_of_range.csv", [head, good[0], [*good[1][:col("goal_1")], "11", *good[1][col("goal_1") + 1:]]])
    _write(folder / "unknown_episode.csv", [head, good[0], [*good[1][:2], PK[:-1] + "5", *good[1][3:]]])
    _write(folder / "broken_data.csv", [head, [*good[0][:3], good[0][3][:-1], *good[0][4:]], good[1]])
    models = data_dir() / HUMAN_EVAL_DIR / "episode_models.jsonl"
    line = next(x for x in models.read_text().splitlines() if f'"{PK}"' in x)
    (folder / "episode_models.jsonl").write_text(line + "\n")
    return folder


@pytest.fixture(scope="module")
def release():
    return load_human_eval()


@pytest.fixture
def model_map(fixtures):
    return read_episode_models(fixtures / "episode_models.jsonl")


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


def test_fixture_rows_read(model_map, fixtures):
    ratings, views = read_human_eval_csv(fixtures / "mistral-instruct_final.csv", "mistral-7b", model_map)
    assert [r.where for r in ratings] == ["mistral-instruct_final.csv, line 2", "mistral-instruct_final.csv, line 3"]
    assert {r.pk for r in ratings} == {PK} and views[PK].has_transcript
    assert all(0 <= r.agents[a]["goal"].score <= 10 for r in ratings for a in (0, 1))


@pytest.mark.parametrize(("fixture", "message"), [
    ("missing_column.csv", r"missing_column\.csv, line 1, column goal_2: missing column"),
    ("score_out_of_range.csv", r"score_out_of_range\.csv, line 3, column goal_1: score 11 is outside goal's range \[0, 10\]"),
    ("unknown_episode.csv", r"unknown_episode\.csv, line 3, column pk: episode '01HNBEX1CAAMK0YQ7M1ZZ6BHS5' is not in the model map"),
    ("broken_data.csv", r"broken_data\.csv, line 2, column data: not valid JSON"),
])
def test_bad_input_names_file_line_and_column(model_map, fixtures, fixture, message):
    with pytest.raises(DataError, match=message):
        read_human_eval_csv(fixtures / fixture, "mistral-7b", model_map)


def test_more_bad_input(model_map, fixtures, tmp_path):
    good = (fixtures / "mistral-instruct_final.csv").read_text(encoding="utf-8")
    wrong_file = tmp_path / "x.csv"
    wrong_file.write_text(good, encoding="utf-8")
    with pytest.raises(DataError, match=r"x\.csv, line 2, column pk: .*study folder 'GPT3.5-MistralInstruct'.*bc file"):
        read_human_eval_csv(wrong_file, "bc", model_map)  # an episode in another model's file
    not_a_view = tmp_path / "y.csv"
    not_a_view.write_text(good.replace('"{""scenario""', '"{""scenery""', 1), encoding="utf-8")
    with pytest.raises(DataError, match=r"y\.csv, line 2, column data: not the annotation app's episode view"):
        read_human_eval_csv(not_a_view, "mistral-7b", model_map)
    twice = tmp_path / "episode_models.jsonl"
    twice.write_text((fixtures / "episode_models.jsonl").read_text() * 2)
    with pytest.raises(DataError, match=r"episode_models\.jsonl:2: episode .* is listed twice"):
        read_episode_models(twice)
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({PK: {"env_pk": "e", "agent1": {**dict.fromkeys(HUMAN_DIMENSIONS, 0.0),
                                                                   "goal": 11.0, "overall_score": 11 / 7},
                                       "agent2": {}}}))
    with pytest.raises(DataError, match=r"scores\.json, episode .*, agent1\.goal: 11\.0 is outside \[0, 10\]"):
        read_gpt4_scores(scores)


def _per_episode_files() -> dict[str, bytes]:
    """What the public per-episode files hold for the fields the derived files keep (served offline)."""
    out = {}
    renderings = {json.loads(x)["pk"]: json.loads(x)["rewards_prompt"]
                  for x in (shared_data_dir() / OFFICIAL_RENDERINGS).read_text().splitlines()}
    for line in (shared_data_dir() / EPISODE_MODELS).read_text().splitlines():
        e = json.loads(line)
        url = fetch_mod.episode_file_url(e["study_folder"], e["pk"])
        out[url] = json.dumps({"pk": e["pk"], "environment": e["environment_pk"], "tag": e["tag"],
                               "models": e["models"], "rewards_prompt": renderings[e["pk"]]}).encode()
    return out


def test_the_derived_files_rebuild_to_their_pinned_checksums(monkeypatch, tmp_path):
    files = _per_episode_files()
    csvs = {name: (shared_data_dir() / HUMAN_EVAL_DIR / name).read_bytes() for name, _ in HUMAN_EVAL_CSVS.values()}
    for relpath in (EPISODE_MODELS, OFFICIAL_RENDERINGS):
        assert hashlib.sha256(rebuild_derived(relpath, csvs, files.__getitem__)).hexdigest() == SOTOPIA_FILES[relpath].sha256
    rebuilt = rebuild_derived(EPISODE_MODELS, csvs, files.__getitem__)
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
