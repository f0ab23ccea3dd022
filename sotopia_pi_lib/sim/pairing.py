"""Which characters play a scenario: fixed benchmark combos, or sampled pairs for a new task.

A new task is paired like SOTOPIA's constraint sampler does it: only pairs that have the scenario's
relationship in relationship_profiles, in an order whose ages fit the scenario's age constraint
(the constraint is per position, so both orders of a pair are candidates). Occupation constraints
are not enforced: SOTOPIA's own combos ignore them (no character is an "actor", which one asks for).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ..data.profiles import AgentProfile, EnvAgentCombo, EnvironmentProfile
from ..data.sotopia import SotopiaData
from ..errors import DataError
from .rules import EpisodeSetup

log = logging.getLogger(__name__)


def parse_task(task: EnvironmentProfile | Mapping[str, Any], where: str = "task") -> EnvironmentProfile:
    """Validate a scenario (e.g. a generated one); a missing or empty goal is a DataError naming it."""
    if isinstance(task, EnvironmentProfile):
        return task
    try:
        return EnvironmentProfile.model_validate(dict(task))
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, x['loc'])) or '<task>'}: {x['msg']}" for x in e.errors()[:3]
        )
        name = task.get("env_id") or task.get("codename") or "?"
        raise DataError(f"{where} {name}: invalid scenario ({problems})") from None


def _profile(data: SotopiaData, agent_id: str, where: str) -> AgentProfile:
    if agent_id not in data.agents:
        raise DataError(f"{where}: unknown character id {agent_id!r} (not in agent_profiles)")
    return data.agents[agent_id]


def setup_for_pair(
    task: EnvironmentProfile | Mapping[str, Any],
    agent_ids: Sequence[str],
    data: SotopiaData,
    combo_id: str | None = None,
) -> EpisodeSetup:
    """The setup of `task` played by `agent_ids` (position 0 first), under the scenario's relationship
    (as SOTOPIA does: the pair's own relationship profile and story are not shown to anyone)."""
    env = parse_task(task)
    where = f"scenario {env.env_id}" + (f" combo {combo_id}" if combo_id else "")
    if len(agent_ids) != 2 or agent_ids[0] == agent_ids[1]:
        raise DataError(f"{where}: needs two different characters, got {list(agent_ids)}")
    a, b = (_profile(data, x, where) for x in agent_ids)
    return EpisodeSetup(
        env_id=env.env_id,
        codename=env.codename,
        scenario=env.scenario,
        goals=env.agent_goals,
        agents=(a, b),
        relationship=env.relationship,
        combo_id=combo_id,
    )


def setup_for_combo(combo: EnvAgentCombo, data: SotopiaData) -> EpisodeSetup:
    if combo.env_id not in data.environments:
        raise DataError(f"combo {combo.combo_id}: unknown scenario {combo.env_id!r}")
    return setup_for_pair(data.environments[combo.env_id], combo.agent_ids, data, combo.combo_id)


def setups_for_task_set(data: SotopiaData, name: str) -> list[EpisodeSetup]:
    """The fixed benchmark settings of a task set ("sotopia_all": 450, "sotopia_hard": 70)."""
    return [setup_for_combo(c, data) for c in data.task_set(name)]


def candidate_pairs(env: EnvironmentProfile, data: SotopiaData) -> list[tuple[str, str]]:
    """Every ordered pair that has the scenario's relationship and fits its age constraint."""
    out = []
    for rel in data.relationships:
        if rel.relationship != env.relationship:
            continue
        for a, b in ((rel.agent1_id, rel.agent2_id), (rel.agent2_id, rel.agent1_id)):
            if a not in data.agents or b not in data.agents:
                raise DataError(f"relationship {rel.relationship_id} names an unknown character")
            if env.allows_ages((data.agents[a].age, data.agents[b].age)):
                out.append((a, b))
    return sorted(set(out))


def sample_pairs(
    task: EnvironmentProfile | Mapping[str, Any], data: SotopiaData, n: int, seed: int
) -> list[EpisodeSetup]:
    """`n` distinct character pairs for a (generated) task, seeded; fewer, with a warning, if fewer fit."""
    env = parse_task(task)
    pool = candidate_pairs(env, data)
    if not pool:
        raise DataError(
            f"scenario {env.env_id}: no character pair has relationship {env.relationship.name} "
            f"and fits age constraint {env.age_constraint}"
        )
    if len(pool) < n:
        log.warning("scenario %s: only %d character pairs fit, asked for %d", env.env_id, len(pool), n)
    picked = random.Random(f"{seed}/{env.env_id}").sample(pool, min(n, len(pool)))
    return [setup_for_pair(env, pair, data) for pair in picked]
