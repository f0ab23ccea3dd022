"""The project's own episode rules against the official package's, on the same inputs.

In the sotopia style the package decides what each agent sees and when an episode ends. Here the
project's public functions (`sim.rules.end_reason`, `sim.prompts.render_prompt`) are checked against
the package's verdicts (`sim.official.official_verdicts`: replays through its environment, no model):
the ending rule on seeded random action sequences, and what each agent is shown of the other
character, the goals and the hidden scenario notes on every relationship type.

Both are expected to fail until the project's protocol follows the official rules (the stale quirk,
`turn_number > max_turns`, relationship-dependent backgrounds); `strict` makes them fail loudly once it
does, so the markers get removed.
"""

from __future__ import annotations

import random
import re

import pytest

from sotopia_pi_lib.data.profiles import RelationshipType
from sotopia_pi_lib.official import official_available
from sotopia_pi_lib.sim import AgentAction, RuleConfig, Turn, end_reason, render_prompt, setups_for_task_set
from sotopia_pi_lib.sim.official import official_verdicts

pytestmark = [pytest.mark.skipif(not official_available(), reason="run `make sotopia` first"), pytest.mark.slow]
KINDS = ("none", "speak", "non-verbal communication", "action", "leave")
WEIGHTS = (0.3, 0.45, 0.1, 0.1, 0.05)


def random_turns(seed: int, n: int = 24) -> list[Turn]:
    rng = random.Random(seed)
    kinds = rng.choices(KINDS, WEIGHTS, k=n)
    return [Turn(index=i, agent=i % 2, action=AgentAction(action_type=k, argument="" if k == "none" else f"a{i}"),
                 raw="") for i, k in enumerate(kinds)]  # fmt: skip


def project_ending(turns: list[Turn], rules: RuleConfig) -> tuple[int, str] | None:
    for i in range(len(turns)):
        reason = end_reason(turns[: i + 1], rules)
        if reason is not None:
            return i, reason
    return None


def official_ending(reasons: list) -> tuple[int, str] | None:
    return next(((i, r) for i, r in enumerate(reasons) if r is not None), None)


RULES = (RuleConfig(), RuleConfig(max_turns=4, max_stale_turns=2))  # the paper's, the ci profile's


@pytest.fixture(scope="module")
def verdicts(sotopia):
    """One worker for the module: seeded action sequences under each rule set, and the first
    observation of every relationship type and every scenario with hidden notes."""
    setup = setups_for_task_set(sotopia, "sotopia_hard")[0]
    endings = [(setup, random_turns(seed), rules) for rules in RULES for seed in range(120)]
    picked = {}
    for s in setups_for_task_set(sotopia, "sotopia_all"):
        hidden = "viewer=" in s.scenario + "".join(s.goals)
        picked.setdefault((s.relationship, hidden and s.env_id), s)
    seen = [(s, [], RuleConfig()) for s in picked.values()]
    results = official_verdicts(endings + seen)
    return list(zip(endings, results[: len(endings)], strict=True)), list(zip(seen, results[len(endings) :], strict=True))


def test_episodes_end_where_and_why_the_package_ends_them(verdicts):
    endings, _ = verdicts
    differ = [(seed % 120, rules.max_turns, project_ending(turns, rules), official_ending(v.end_reasons))
              for seed, ((_, turns, rules), v) in enumerate(endings)
              if project_ending(turns, rules) != official_ending(v.end_reasons)]  # fmt: skip
    assert differ == []


def probes(setup, agent: int) -> list[str]:
    """Text that shows whether agent `agent` is told a thing: each character's secret, public info,
    personality and (where the two differ) age, the goals, and the scenario's hidden notes."""
    out = []
    for profile in setup.agents:
        out += [profile.secret, profile.public_info, profile.personality_and_values]
    if setup.agents[0].age != setup.agents[1].age:
        out += [f"{p.age}-year-old" for p in setup.agents]
    for text in (setup.scenario, *setup.goals):
        out += re.findall(r"<p viewer=.environment.>(.*?)</p>", text)
    out += [re.sub(r"<[^>]+>", "", goal)[:40] for goal in setup.goals]
    return [p.strip() for p in out if p.strip()]


def test_each_agent_sees_what_the_package_shows_it(verdicts):
    """Every relationship type, and every scenario with hidden notes. In 0.0.6 an agent in a stranger
    scenario sees no background at all, not even its own (ScriptBackground drops both when one is empty)."""
    _, seen = verdicts
    assert {s.relationship for (s, _, _), _ in seen} == set(RelationshipType) - {RelationshipType.family_member}
    differ = []
    for (setup, _, _), verdict in seen:
        for agent in (0, 1):
            ours = "\n".join(m.content for m in render_prompt(setup, agent, []))
            for probe in probes(setup, agent):
                if (probe in ours) != (probe in verdict.observations[agent]):
                    differ.append((setup.env_id, setup.relationship.name, agent, probe[:50], probe in ours))
    assert differ == []
