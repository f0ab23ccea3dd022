"""Load SOTOPIA's profiles, benchmark combos, named task sets and inspirational prompts.

Everything is parsed into the typed models of `profiles` and cross-checked (every combo names a
known scenario and characters), so a bad line fails here, with its file and line number, instead
of as a KeyError in the middle of a simulation.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ..errors import DataError
from ..store.jsonl import read_jsonl
from .fetch import verified_path
from .profiles import (
    AgentProfile,
    EnvAgentCombo,
    EnvironmentProfile,
    InspirationalPrompt,
    RelationshipProfile,
)

TASK_SETS = {"sotopia_all": "sotopia_env", "sotopia_hard": "sotopia_hard_env"}


def _describe(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or '<line>'}: {err['msg']}" for err in e.errors())


def read_inspirational_prompts(path: Path) -> list[InspirationalPrompt]:
    """Read the '|'-separated prompt file; rows whose source is 'nan' keep source=None."""
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="|")
        header = next(reader, None)
        if header != ["model", "source", "pk", "prompt"]:
            raise DataError(f"{path}:1: expected header model|source|pk|prompt, got {header}")
        for lineno, row in enumerate(reader, 2):
            if len(row) != 4:
                raise DataError(f"{path}:{lineno}: expected 4 '|'-separated fields, got {len(row)}")
            model, source, pk, prompt = row
            try:
                out.append(
                    InspirationalPrompt(
                        pk=pk, source=None if source == "nan" else source, prompt=prompt, model=model
                    )
                )
            except ValidationError as e:
                raise DataError(f"{path}:{lineno}: invalid inspirational prompt: {_describe(e)}") from None
    return out


@dataclass
class SotopiaData:
    """All of SOTOPIA's static data, indexed by id."""

    agents: dict[str, AgentProfile]
    environments: dict[str, EnvironmentProfile]
    relationships: list[RelationshipProfile]
    combos: list[EnvAgentCombo]
    env_id_sets: dict[str, list[str]]
    inspirational_prompts: list[InspirationalPrompt] = field(default_factory=list)

    def task_set(self, name: str) -> list[EnvAgentCombo]:
        """The benchmark combos of a named task set, in the file's order."""
        if name not in TASK_SETS:
            raise DataError(f"unknown task set {name!r}; known: {', '.join(TASK_SETS)}")
        wanted = set(self.env_id_sets[TASK_SETS[name]])
        return [c for c in self.combos if c.env_id in wanted]

    def relationship_between(self, a: str, b: str) -> RelationshipProfile | None:
        for r in self.relationships:
            if {r.agent1_id, r.agent2_id} == {a, b}:
                return r
        return None


def _check_references(data: SotopiaData, combos_path: Path, ids_path: Path) -> None:
    for i, c in enumerate(data.combos, 1):
        if c.env_id not in data.environments:
            raise DataError(f"{combos_path}: combo {c.combo_id} names unknown scenario {c.env_id}")
        for a in c.agent_ids:
            if a not in data.agents:
                raise DataError(f"{combos_path}: combo {c.combo_id} (entry {i}) names unknown character {a}")
    for name in TASK_SETS.values():
        if name not in data.env_id_sets:
            raise DataError(f"{ids_path}: no task set {name!r}")
        missing = [e for e in data.env_id_sets[name] if e not in data.environments]
        if missing:
            raise DataError(f"{ids_path}: task set {name!r} names unknown scenarios {missing[:3]}")


def load_sotopia(data_folder: Path | None = None) -> SotopiaData:
    """Load and cross-check every SOTOPIA file from the data folder (fetching any missing one)."""

    def p(rel: str) -> Path:
        return verified_path(rel, data_folder)

    combos_path, ids_path = p("sotopia/env_agent_combo_storages.jsonl"), p("sotopia_pi/env_ids.json")
    try:
        env_id_sets = json.loads(ids_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{ids_path}:{e.lineno}: not valid JSON: {e.msg}") from None
    data = SotopiaData(
        agents={a.agent_id: a for a in read_jsonl(p("sotopia/agent_profiles.jsonl"), AgentProfile)},
        environments={
            e.env_id: e
            for e in read_jsonl(p("sotopia/environment_profiles.jsonl"), EnvironmentProfile)
        },
        relationships=read_jsonl(p("sotopia/relationship_profiles.jsonl"), RelationshipProfile),
        combos=read_jsonl(combos_path, EnvAgentCombo),
        env_id_sets=env_id_sets,
        inspirational_prompts=read_inspirational_prompts(p("sotopia_pi/inspirational_prompts.csv")),
    )
    _check_references(data, combos_path, ids_path)
    return data
