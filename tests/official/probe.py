"""Run in the official environment (.venv-sotopia): SOTOPIA's own environment on scripted inputs.

Reads {"visibility": [...], "ending": [...]} as JSON on stdin and prints what the official code does:
- visibility cases {scenario, goals, relationship, agents: [profile dict, profile dict]} -> the text
  `ParallelSotopiaEnv.reset` shows each agent and the environment's background text;
- ending cases {max_turns, max_stale, actions: [action_type, ...]} -> after how many steps the
  round-robin environment, with its RuleBasedTerminatedEvaluator, terminated, and its reasons.
Imports only sotopia and the standard library (the project's code must not shadow it).
"""

import contextlib
import json
import sys

from sotopia.agents import Agents, LLMAgent
from sotopia.database import AgentProfile, EnvironmentProfile
from sotopia.database.persistent_profile import RelationshipType
from sotopia.envs.evaluators import RuleBasedTerminatedEvaluator
from sotopia.envs.parallel import ParallelSotopiaEnv
from sotopia.messages import AgentAction


def _env(case, evaluators=()):
    # construct(): the profiles are redis-om models whose __init__ checks a Redis server for RedisJSON;
    # nothing here touches a database, so the check is skipped by building them without __init__.
    profile = EnvironmentProfile.construct(scenario=case.get("scenario", "s"), agent_goals=case.get("goals", ["g1", "g2"]),
                                           relationship=RelationshipType(case.get("relationship", 0)))
    agents = Agents({})
    for p in case.get("agents") or [{"first_name": "Ann", "last_name": "A"}, {"first_name": "Bob", "last_name": "B"}]:
        agent = LLMAgent(agent_profile=AgentProfile.construct(**p))
        agents[agent.agent_name] = agent
    env = ParallelSotopiaEnv(action_order="round-robin", evaluators=list(evaluators), env_profile=profile)
    obs = env.reset(agents=agents)
    return env, obs


def visibility(case):
    env, obs = _env(case)
    return {"agents": [obs[name].last_turn for name in env.agents],
            "environment": env.background.to_natural_language()}


def ending(case):
    evaluator = RuleBasedTerminatedEvaluator(max_turn_number=case["max_turns"], max_stale_turn=case["max_stale"])
    env, _ = _env({}, [evaluator])
    for step, kind in enumerate(case["actions"], 1):
        mover = env.agents[(step - 1) % 2]
        actions = {name: AgentAction(action_type=kind if name == mover else "none", argument="x" if name == mover else "")
                   for name in env.agents}
        _, _, terminated, _, info = env.step(actions)
        if all(terminated.values()):
            return {"steps": step, "reasons": info[env.agents[0]]["comments"]}
    return {"steps": None, "reasons": ""}


payload = json.load(sys.stdin)
with contextlib.redirect_stdout(sys.stderr):  # the package prints progress to stdout
    out = {"visibility": [visibility(c) for c in payload.get("visibility", [])],
           "ending": [ending(c) for c in payload.get("ending", [])]}
json.dump(out, sys.stdout)
