"""The sotopia prompt style: episodes played by the official `sotopia` package's own agents and
environment (its prompts, visibility, ending rule and parse-failure handling, by construction), with
the study's models answering through the project's server.

Everything around the episode is the project's: which episodes to play (specs, seeds, tags), the
episode id, the store and resume, the record. A job per episode goes to the package's worker
(official/scripts/worker.py); its result (the actions, the package's own ending reasons) and the
exchanges the server answered become an ordinary EpisodeRecord whose turns carry the exact prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from ..errors import BackendError, ConfigError
from ..llm.base import LLM
from ..official.routing import Exchange
from ..official.runtime import Worker
from ..official.session import WORKER_SCRIPT, OfficialSession, SessionConfig
from .episode import AgentAction, EndReason, EpisodeRecord, Turn
from .episode_store import EpisodeFailure
from .rules import EpisodeSetup, RuleConfig
from .runner import EpisodeSpec, RunConfig

REFORMAT_LABEL = "reformat"
# The package's termination reasons (RuleBasedTerminatedEvaluator) -> the record's end reason; an
# episode can meet several at once: leaving wins, as in the project's rules.
_END_REASONS: tuple[tuple[str, EndReason], ...] = (
    ("is leaving", "leave"), ("stales for too long", "stale"), ("too long", "max_turns"),
)  # fmt: skip


def setup_payload(setup: EpisodeSetup) -> dict[str, Any]:
    """The scenario and both characters as the package's profile models take them."""
    if setup.relationship is None:
        raise ConfigError(
            f"scenario {setup.env_id}: no relationship type; the sotopia style needs one (the package "
            "decides what each agent sees of the other by it)"
        )
    env = {"codename": setup.codename, "scenario": setup.scenario, "agent_goals": list(setup.goals),
           "relationship": int(setup.relationship)}  # fmt: skip
    return {"env": env, "agents": [a.model_dump(exclude={"agent_id"}) for a in setup.agents]}


def action_schema_from(package_schema: Mapping[str, Any], max_argument_chars: int | None) -> dict[str, Any]:
    """The package's AgentAction schema, tightened for constrained decoding: only its two fields,
    the argument capped like the project style's."""
    props = package_schema["properties"]
    argument: dict[str, Any] = {"type": "string"}
    if max_argument_chars is not None:
        argument["maxLength"] = max_argument_chars
    return {
        "type": "object",
        "properties": {"action_type": {"type": "string", "enum": list(props["action_type"]["enum"])}, "argument": argument},
        "required": list(package_schema["required"]),
        "additionalProperties": False,
    }


def end_reason_from(reasons: str) -> EndReason:
    for phrase, reason in _END_REASONS:
        if phrase in reasons:
            return reason
    raise ValueError(f"the package ended the episode for no known reason: {reasons!r}")


def _turn(index: int, played: dict[str, Any], exchanges: list[Exchange], agent_wire: str) -> Turn | str:
    """One turn from the worker's action and the exchanges of that turn (the last answer to each
    wire name: the client retries after a failed request)."""
    agent = played["agent"]
    mine = {x.wire_model: x for x in exchanges if x.slot == f"agent{agent}" and x.turn == index}
    asked = mine.pop(agent_wire, None)
    if asked is None:
        return f"turn {index}: the server answered no request of agent {agent} (the backend failed every retry)"
    reformat = next(iter(mine.values()), None)
    spent = [asked] + ([reformat] if reformat else [])
    return Turn(
        index=index, agent=agent, action=AgentAction(action_type=played["action_type"], argument=played["argument"]),
        raw=asked.text, prompt=asked.messages, reformatted=reformat.text if reformat else None,
        prompt_tokens=sum(x.prompt_tokens for x in spent), completion_tokens=sum(x.completion_tokens for x in spent),
        latency_s=round(sum(x.latency_s for x in spent), 4), cached=all(x.cached for x in spent),
    )  # fmt: skip


class OfficialPlay:
    """Turns specs into worker jobs and worker results into turns, for one batch. `reformat` is the
    served name of the reformatting model (None: each agent's own model)."""

    def __init__(self, config: RunConfig, session: OfficialSession, reformat: str | None = None) -> None:
        self.config, self.session, self.reformat = config, session, reformat
        self.agent_wire, self.reformat_wire = session.wire_models()

    def job(self, episode_id: str, spec: EpisodeSpec) -> dict[str, Any]:
        routes = {}
        for slot, label in enumerate(spec.models):
            routes[f"agent{slot}"] = {
                "episode": episode_id, "slot": f"agent{slot}", "seed": spec.seed,
                "models": {self.agent_wire: label, self.reformat_wire: self.reformat or label},
                "max_tokens": self.config.sampling.max_tokens,
                "schema_name": "action" if self.config.sotopia.json_schema else None,
            }  # fmt: skip
        rules = {"max_turns": self.config.rules.max_turns, "max_stale_turns": self.config.rules.max_stale_turns}
        return {"id": episode_id, "kind": "play", **setup_payload(spec.setup), "rules": rules, "routes": routes}

    def outcome(self, result: dict[str, Any], exchanges: list[Exchange]) -> list[Turn] | str:
        """The episode's turns, or why it failed."""
        if "error" in result:
            return f"the official worker failed: {result['error'].strip().splitlines()[-1]}"
        turns = []
        for index, played in enumerate(result["turns"]):
            turn = _turn(index, played, exchanges, self.agent_wire)
            if isinstance(turn, str):
                return turn
            turns.append(turn)
        return turns


def _failure(episode_id: str, spec: EpisodeSpec, turn: int, error: str) -> EpisodeFailure:
    s = spec.setup
    return EpisodeFailure(episode_id=episode_id, env_id=s.env_id, agent_ids=s.agent_ids, models=spec.models,
                          turn=turn, error=error, tags=spec.tags)  # fmt: skip


def play_official(
    todo: Sequence[tuple[str, EpisodeSpec]],
    models: Mapping[str, LLM],
    config: RunConfig,
    make_record: Callable[[str, EpisodeSpec, list[Turn], EndReason, float], EpisodeRecord],
    book: Callable[[EpisodeRecord | EpisodeFailure], None],
    reformatter: LLM | None = None,
) -> None:
    """Play every (episode id, spec) of `todo` with the package, `config.max_live_episodes` at a time;
    each finished episode is built by `make_record` and handed to `book` as soon as it is out."""
    if not todo:
        return
    served = dict(models) | ({REFORMAT_LABEL: reformatter} if reformatter is not None else {})
    session_config = SessionConfig(max_live=config.max_live_episodes, agent_temperature=config.sampling.temperature)
    specs = dict(todo)
    with OfficialSession(served, session_config) as session:
        if config.sotopia.json_schema:
            package = session.hello["schemas"]["action"]
            session.router.schemas["action"] = action_schema_from(package, config.max_argument_chars)
        play = OfficialPlay(config, session, REFORMAT_LABEL if reformatter is not None else None)
        for episode_id, spec in todo:
            session.submit(play.job(episode_id, spec))
        for result, exchanges in session.results():
            episode_id = result["id"]
            spec = specs[episode_id]
            turns = play.outcome(result, exchanges)
            if isinstance(turns, str):
                book(_failure(episode_id, spec, len(result.get("turns", [])), turns))
            else:
                book(make_record(episode_id, spec, turns, end_reason_from(result["end"]), result["seconds"]))


class Verdict(BaseModel):
    """The package's own view of a sequence of turns in a setup."""

    observations: tuple[str, str] = Field(description="what each agent is shown before the first turn")
    end_reasons: list[EndReason | None] = Field(description="after each turn: why the package would end here")


def official_verdicts(
    cases: Sequence[tuple[EpisodeSetup, Sequence[Turn], RuleConfig]], max_live: int = 8
) -> list[Verdict]:
    """Replay each (setup, turns, rules) through the package's environment and rule evaluator, no
    model involved: the official visibility and ending rule, to check the project's against."""
    config = {"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-unused", "max_live": max_live,
              "agent_temperature": 1.0, "judge_temperature": 0.0}  # fmt: skip
    with Worker(WORKER_SCRIPT, config) as worker:
        for i, (setup, turns, rules) in enumerate(cases):
            played = [{"agent": t.agent, **t.action.model_dump()} for t in turns]
            limits = {"max_turns": rules.max_turns, "max_stale_turns": rules.max_stale_turns}
            worker.send({"id": str(i), "kind": "replay", **setup_payload(setup), "turns": played, "rules": limits})
        results = {}
        for _ in cases:
            result = worker.next()
            if "error" in result:
                raise BackendError(f"replaying case {result['id']}: {result['error'].strip().splitlines()[-1]}")
            results[int(result["id"])] = result
    return [
        Verdict(observations=tuple(r["observations"]),
                end_reasons=[end_reason_from(v) if v else None for v in r["verdicts"]])
        for _, r in sorted(results.items())
    ]  # fmt: skip
