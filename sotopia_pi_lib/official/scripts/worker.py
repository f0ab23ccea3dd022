"""A long-running worker that plays and rates episodes with SOTOPIA's own code, many at once.

Protocol (JSON lines): the first stdin line configures the worker; it answers with one `hello` line
(package version, the model names it sends, the JSON schemas of the package's output models). Then
every stdin line is a job, and every stdout line a result `{"id": ..., ...}` in finishing order. EOF
on stdin: finish the running jobs and exit. The package's own prints go to stderr.

Jobs run on a thread pool, each in its own asyncio loop: SOTOPIA reformats an unparseable output with
a *blocking* call (`format_bad_output` -> `chain.predict`), which in one shared loop would freeze
every other episode until it returns.

Routing: the package sends every agent turn as model `gpt-4` and every reformatting request as
`gpt-3.5-turbo` (its fixed snapshots), always to OPENAI_API_BASE. Each request carries a header,
built by the project and completed here with the turn number, that tells the project's server which
study model answers it. openai 0.28 honours a per-asyncio-context aiohttp session (`openai.aiosession`,
a ContextVar) and a session factory for its blocking path (`openai.requestssession`), so the header is
set per agent turn without touching the package's code.

Imports only sotopia, its own dependencies and the standard library.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

# Nothing is stored: any database access fails at once (a closed local port) instead of reaching a Redis.
os.environ["REDIS_OM_URL"] = "redis://127.0.0.1:1"

import aiohttp  # noqa: E402
import gin  # noqa: E402
import openai  # noqa: E402
import requests  # noqa: E402
from sotopia.agents import Agents, LLMAgent  # noqa: E402
from sotopia.database.persistent_profile import AgentProfile, EnvironmentProfile, RelationshipType  # noqa: E402
from sotopia.envs.evaluators import (  # noqa: E402
    EnvResponse,
    Evaluator,
    ReachGoalLLMEvaluator,
    RuleBasedTerminatedEvaluator,
)
from sotopia.envs.parallel import ParallelSotopiaEnv  # noqa: E402
from sotopia.generation_utils.generate import _return_fixed_model_version, logging_handler  # noqa: E402
from sotopia.messages import AgentAction  # noqa: E402

AGENT_MODEL = "gpt-4"  # a routing token only: the header says which study model answers
REFORMAT_MODEL = "gpt-3.5-turbo"  # what format_bad_output always asks (its default model_name)
_ROUTE: contextvars.ContextVar[str | None] = contextvars.ContextVar("route", default=None)
_WRITE = threading.Lock()
_HEADER = "x-sotopia-pi-route"


class _RoutedSession(requests.Session):
    """The blocking path's session: adds the current context's route header to every request."""

    def request(self, method, url, **kwargs):  # noqa: ANN001, ANN003, ANN201
        route = _ROUTE.get()
        if route is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), _HEADER: route}
        return super().request(method, url, **kwargs)


async def _routed(route: dict, call):  # noqa: ANN001, ANN202
    """Await `call()` with every request it makes (async or blocking) carrying `route`."""
    text = json.dumps(route, separators=(",", ":"))
    _ROUTE.set(text)  # this task's context only (asyncio.gather gives each agent its own)
    async with aiohttp.ClientSession(headers={_HEADER: text}) as session:
        openai.aiosession.set(session)
        return await call()


class _NoRating(Evaluator):
    """Terminal evaluator of the play phase: ratings are made afterwards by the `rate` job, so the
    environment's termination path (which reads `terminal_evaluators[0].prompt`) finds one."""

    prompt = ""

    def __call__(self, turn_number, messages):  # noqa: ANN001, ANN204
        return []

    async def __acall__(self, turn_number, messages):  # noqa: ANN001, ANN204
        return []


def _profiles(job: dict) -> tuple[EnvironmentProfile, list[AgentProfile]]:
    """The package's profile models, built without validation: JsonModel.__init__ would ask a Redis
    server whether it has RedisJSON (redis-om checks on construction), and nothing here is stored."""
    env = {k: v for k, v in job["env"].items() if k in EnvironmentProfile.__fields__}
    env["relationship"] = RelationshipType(env["relationship"])
    agents = [{k: v for k, v in a.items() if k in AgentProfile.__fields__} for a in job["agents"]]
    return EnvironmentProfile.construct(**env), [AgentProfile.construct(**a) for a in agents]


def _environment(job: dict, rules: dict | None) -> tuple[ParallelSotopiaEnv, Agents]:
    env_profile, profiles = _profiles(job)
    evaluators = [RuleBasedTerminatedEvaluator(rules["max_turns"], rules["max_stale_turns"])] if rules else []
    env = ParallelSotopiaEnv(
        env_profile=env_profile, action_order="round-robin", model_name=AGENT_MODEL,
        evaluators=evaluators, terminal_evaluators=[_NoRating()],
    )  # fmt: skip
    agents = Agents({a.agent_name: a for a in (LLMAgent(agent_profile=p, model_name=AGENT_MODEL) for p in profiles)})
    return env, agents


def _turn_route(job: dict, slot: int, turn: int) -> dict:
    return {**job["routes"][f"agent{slot}"], "turn": turn}


async def _act(agent: LLMAgent, obs, route: dict):  # noqa: ANN001, ANN202
    return await _routed(route, lambda: agent.aact(obs))


def _end_reasons(env: ParallelSotopiaEnv, rules: dict) -> str:
    """The package's own termination reasons for the final state."""
    [(_, ((_, terminated), reasons))] = RuleBasedTerminatedEvaluator(rules["max_turns"], rules["max_stale_turns"])(
        env.turn_number, env.inbox
    )
    return reasons if terminated else ""


async def play(job: dict) -> dict:
    """One episode, as `sotopia.server.arun_one_episode` plays it (that function itself cannot run
    without Redis: after the episode it renders its log with AgentProfile.get, a database read)."""
    started = time.perf_counter()
    env, agents = _environment(job, job["rules"])
    obs = env.reset(agents=agents, omniscient=False)
    first = {name: obs[name].last_turn for name in env.agents}
    agents.reset()
    for index, name in enumerate(env.agents):
        agents[name].goal = env.profile.agent_goals[index]
    turns, done = [], False
    while not done:
        actions = await asyncio.gather(
            *[_act(agents[name], obs[name], _turn_route(job, i, env.turn_number)) for i, name in enumerate(env.agents)]
        )
        acting = env.action_mask.index(True)
        turns.append({"agent": acting, **actions[acting].dict()})
        if job.get("log_prompts"):  # the package's own log of the last prompt it rendered (one job at a time)
            turns[-1]["package_prompt"] = logging_handler.retrive_prompt()
        obs, _, terminated, _, _ = await env.astep(dict(zip(env.agents, actions, strict=True)))
        done = all(terminated.values())
    return {"turns": turns, "end": _end_reasons(env, job["rules"]), "observations": [first[n] for n in env.agents],
            "environment": env.background.to_natural_language(), "seconds": time.perf_counter() - started}  # fmt: skip


def _replay_env(job: dict, rules: dict | None) -> tuple[ParallelSotopiaEnv, list]:
    env, agents = _environment(job, rules)
    obs = env.reset(agents=agents, omniscient=False)
    return env, [obs[name].last_turn for name in env.agents]


async def _step(env: ParallelSotopiaEnv, turn: dict) -> None:
    """One recorded turn: the acting agent's action, `none` for the other (the environment masks the
    agent not on turn to `none` anyway)."""
    none = AgentAction(action_type="none", argument="")
    acting = AgentAction(action_type=turn["action_type"], argument=turn["argument"])
    await env.astep({name: acting if i == turn["agent"] else none for i, name in enumerate(env.agents)})


async def replay(job: dict) -> dict:
    """The package's verdict on a sequence of actions: what each agent is shown first, and after
    every turn the rule evaluator's termination reasons ("" while the episode would go on)."""
    env, observations = _replay_env(job, None)
    verdicts = []
    for turn in job["turns"]:
        await _step(env, turn)
        verdicts.append(_end_reasons(env, job["rules"]))
    return {"observations": observations, "verdicts": verdicts}


async def rate(job: dict) -> dict:
    """Replay a finished episode through the environment (so its inbox is what the live episode's
    was) and call the package's SOTOPIA-EVAL evaluator on it, as the terminal evaluator is called."""
    env, _ = _replay_env(job, None)
    for turn in job["turns"]:
        await _step(env, turn)
    evaluator = ReachGoalLLMEvaluator(AGENT_MODEL)
    route = {**job["routes"]["judge"], "turn": env.turn_number}
    result = await _routed(route, lambda: evaluator.__acall__(turn_number=env.turn_number, messages=env.inbox))
    ratings: dict = {}
    for agent, ((dimension, score), reasoning) in result:
        ratings.setdefault(agent, {})[dimension] = [reasoning, score]
    return {"ratings": ratings}


def _run(job: dict) -> dict:
    try:
        handler = {"play": play, "rate": rate, "replay": replay}[job["kind"]]
        return {"id": job["id"], **asyncio.run(handler(job))}
    except Exception:  # noqa: BLE001 -- reported to the project, which names the episode
        return {"id": job["id"], "error": traceback.format_exc(limit=6)[-3000:]}


def _emit(out, obj: dict) -> None:  # noqa: ANN001
    with _WRITE:
        out.write(json.dumps(obj) + "\n")
        out.flush()


def configure(config: dict) -> None:
    """Point the package at the project's server and set its sampling through its own gin bindings,
    as SOTOPIA-pi's generate.gin does (agents 1.0, evaluator 0.0 in the paper)."""
    os.environ["OPENAI_API_BASE"] = config["base_url"]
    os.environ["OPENAI_API_KEY"] = config["api_key"]
    openai.requestssession = _RoutedSession
    gin.bind_parameter("agenerate_action.temperature", float(config["agent_temperature"]))
    gin.bind_parameter("sotopia.envs.evaluators.__acall__.temperature", float(config["judge_temperature"]))


def main() -> None:
    out, sys.stdout = sys.stdout, sys.stderr  # the package prints freely; results keep stdout to themselves
    config = json.loads(sys.stdin.readline())
    configure(config)
    _emit(out, {"hello": {
        "sotopia": metadata.version("sotopia"), "python": sys.version.split()[0],
        "models": {"agent": _return_fixed_model_version(AGENT_MODEL), "reformat": _return_fixed_model_version(REFORMAT_MODEL)},
        "schemas": {"action": AgentAction.schema(), "evaluation": EnvResponse.schema()},
    }})  # fmt: skip
    with ThreadPoolExecutor(max_workers=int(config["max_live"])) as pool:
        for line in sys.stdin:
            if line.strip():
                pool.submit(lambda job: _emit(out, _run(job)), json.loads(line))


if __name__ == "__main__":
    main()
