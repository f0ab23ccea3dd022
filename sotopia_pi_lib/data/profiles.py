"""Typed SOTOPIA profiles.

The published files carry quirks (relationship as a string, age constraints as a Python-literal
string, "nan"/"none" markers, list items with a leading space); the validators here turn them into
clean types once, so no later stage has to know about them.
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

_MISSING = {"", "nan", "none", "null"}


class RelationshipType(IntEnum):
    """SOTOPIA's relationship scale between two characters."""

    stranger = 0
    know_by_name = 1
    acquaintance = 2
    friend = 3
    romantic_relationship = 4
    family_member = 5


def _strip_items(v: object) -> object:
    if isinstance(v, list):
        return [s.strip() if isinstance(s, str) else s for s in v]
    return v


def _int_from_str(v: object) -> object:
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v.strip())
    return v


StrippedList = Annotated[list[str], BeforeValidator(_strip_items)]
Relationship = Annotated[RelationshipType, BeforeValidator(_int_from_str)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AgentProfile(_Frozen):
    """One of SOTOPIA's 40 characters."""

    agent_id: str
    first_name: str
    last_name: str
    age: int
    occupation: str
    gender: str
    gender_pronoun: str
    public_info: str
    big_five: str
    moral_values: StrippedList
    schwartz_personal_values: StrippedList
    personality_and_values: str
    decision_making_style: str
    secret: str
    mbti: str

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


_AGE_PAIR = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def parse_age_constraint(v: object) -> object:
    """"[(18, 70), (18, 70)]" -> [(18, 70), (18, 70)]; "nan"/"none" -> None."""
    if v is None or (isinstance(v, str) and v.strip().lower() in _MISSING):
        return None
    if isinstance(v, str):
        pairs = _AGE_PAIR.findall(v)
        if not pairs or len(_AGE_PAIR.sub("", v).strip("[], ")) > 0:
            raise ValueError(f"age_constraint {v!r} is not a list of (min, max) pairs")
        return [(int(a), int(b)) for a, b in pairs]
    return v


def parse_name_lists(v: object) -> object:
    """"[actor, actor]" -> ["actor", "actor"]; "nan"/"none" -> None."""
    if v is None or (isinstance(v, str) and v.strip().lower() in _MISSING):
        return None
    if isinstance(v, str):
        inner = v.strip()
        if not (inner.startswith("[") and inner.endswith("]")):
            raise ValueError(f"{v!r} is neither 'nan'/'none' nor a bracketed list")
        return [s.strip().strip("'\"") for s in inner[1:-1].split(",") if s.strip()]
    return v


class EnvironmentProfile(_Frozen):
    """A SOTOPIA scenario (social task): a shared scenario and one private goal per agent."""

    env_id: str
    codename: str
    source: str
    scenario: str
    agent_goals: tuple[str, str]
    relationship: Relationship
    age_constraint: Annotated[list[tuple[int, int]] | None, BeforeValidator(parse_age_constraint)] = None
    occupation_constraint: Annotated[list[str] | None, BeforeValidator(parse_name_lists)] = None
    agent_constraint: Annotated[list[str] | None, BeforeValidator(parse_name_lists)] = None

    @field_validator("agent_goals")
    @classmethod
    def _goals_not_empty(cls, v: tuple[str, str]) -> tuple[str, str]:
        for i, g in enumerate(v):
            if not g.strip():
                raise ValueError(f"agent_goals[{i}] is empty")
        return v

    @field_validator("scenario")
    @classmethod
    def _scenario_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("scenario is empty")
        return v

    def allows_ages(self, ages: tuple[int, int]) -> bool:
        if not self.age_constraint:
            return True
        return all(lo <= a <= hi for a, (lo, hi) in zip(ages, self.age_constraint, strict=False))


class RelationshipProfile(_Frozen):
    """A pair of characters with their relationship and a shared background story."""

    relationship_id: str
    agent1_id: str
    agent2_id: str
    relationship: Relationship
    background_story: str | None = None


class EnvAgentCombo(_Frozen):
    """One benchmark episode setting: a scenario and the two characters who play it."""

    combo_id: str
    env_id: str
    agent_ids: tuple[str, str]


InspirationSource = Literal["social_iqa", "social_chem", "normbank"]


class InspirationalPrompt(_Frozen):
    """Keywords that seed the generation of a new social task (SOTOPIA-pi, section 3.1)."""

    pk: str
    source: InspirationSource | None = Field(description="None where the file says 'nan'")
    prompt: str
    model: str
