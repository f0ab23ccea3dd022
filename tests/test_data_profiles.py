"""SOTOPIA profiles: counts, quirk parsing, malformed lines."""

from __future__ import annotations

import shutil

import pytest

from sotopia_pi_lib.data import RelationshipType, load_sotopia
from sotopia_pi_lib.data.profiles import EnvironmentProfile
from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.paths import data_dir
from sotopia_pi_lib.store.jsonl import read_jsonl


def test_counts(sotopia):
    assert len(sotopia.agents) == 40
    assert len(sotopia.environments) == 90
    assert len(sotopia.relationships) == 120
    assert len(sotopia.combos) == 450
    assert len(sotopia.task_set("sotopia_all")) == 450
    hard = sotopia.task_set("sotopia_hard")
    assert len({c.env_id for c in hard}) == 14
    assert len(hard) == 70
    assert all(sum(c.env_id == e for c in sotopia.combos) == 5 for e in sotopia.environments)


def test_inspirational_prompts(sotopia):
    prompts = sotopia.inspirational_prompts
    assert len(prompts) == 795
    assert sum(p.source is None for p in prompts) == 5
    assert {p.source for p in prompts} == {None, "social_iqa", "social_chem", "normbank"}
    assert len({p.pk for p in prompts}) == 795


def test_quirks_are_parsed(sotopia):
    env = next(e for e in sotopia.environments.values() if e.codename == "divide_things")
    assert env.relationship is RelationshipType.friend
    assert env.age_constraint == [(18, 70), (18, 70)]
    assert env.occupation_constraint is None and env.agent_constraint is None
    assert env.allows_ages((30, 40)) and not env.allows_ages((16, 40))
    actors = [e for e in sotopia.environments.values() if e.occupation_constraint]
    assert [e.occupation_constraint for e in actors] == [["actor", "actor"]]
    amara = sotopia.agents["01H5TNE5PRCAF1CK5ERS5MVZ22"]
    assert amara.moral_values == ["Care", "Fairness"] and amara.name == "Amara Hartley"
    assert all(not v.startswith(" ") for a in sotopia.agents.values() for v in a.schwartz_personal_values)
    assert all(isinstance(r.relationship, RelationshipType) for r in sotopia.relationships)


def test_unknown_task_set(sotopia):
    with pytest.raises(DataError, match="unknown task set 'nope'.*sotopia_all"):
        sotopia.task_set("nope")


def _copy_data(tmp_path):
    shutil.copytree(data_dir() / "sotopia", tmp_path / "sotopia")
    return tmp_path / "sotopia" / "environment_profiles.jsonl"


def test_truncated_jsonl_line_names_file_and_line(tmp_path):
    path = _copy_data(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    lines[6] = lines[6][: len(lines[6]) // 2] + "\n"
    path.write_text("".join(lines))
    with pytest.raises(DataError, match=r"environment_profiles\.jsonl:7: not valid JSON"):
        read_jsonl(path, EnvironmentProfile)


def test_invalid_field_names_line_and_key(tmp_path):
    path = _copy_data(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"age_constraint": "[(18, 70), (18, 70)]"', '"age_constraint": "eighteen"')
    path.write_text("".join(lines))
    with pytest.raises(DataError, match=r":3: not a valid EnvironmentProfile \(age_constraint"):
        read_jsonl(path, EnvironmentProfile)


def test_missing_goal_is_an_error():
    with pytest.raises(ValueError, match="agent_goals"):
        EnvironmentProfile(env_id="x", codename="x", source="x", scenario="s", agent_goals=("a", " "),
                           relationship="0")


def test_corrupted_data_folder_is_detected_before_use(tmp_path):
    shutil.copytree(data_dir(), tmp_path / "data", ignore=shutil.ignore_patterns("wheels", "mmlu"))
    f = tmp_path / "data" / "sotopia" / "agent_profiles.jsonl"
    f.write_text(f.read_text().replace("Amara", "Amaro"))
    with pytest.raises(DataError, match="checksum mismatch.*agent_profiles.jsonl"):
        load_sotopia(tmp_path / "data")
