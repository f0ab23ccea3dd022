"""Test helpers for the sotopia style: a scripted model for the server, and released episodes.

`Scripted` answers like a well-behaved model, instantly: an action as the package asks for one, a
valid SOTOPIA-EVAL object when its evaluator asks. It stands in for the model where a test is about
what reaches the model and what the package makes of the answer, not about what a model says
(tests/test_official_style.py drives the real embedded model too).

`released_episodes` is the project's import of SOTOPIA-pi's human-evaluation episodes with their
`none` turns put back, so the package's environment can replay them.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any

from sotopia_pi_lib.data.sotopia import SotopiaData
from sotopia_pi_lib.judge.rubric import DIMENSIONS
from sotopia_pi_lib.llm.base import LLM
from sotopia_pi_lib.llm.types import LLMRequest, LLMResponse, ModelSpec
from sotopia_pi_lib.paths import data_dir
from sotopia_pi_lib.sim.episode import AgentAction, EpisodeRecord, Turn

HUMAN_EVAL = data_dir() / "sotopia_pi" / "human_eval"
EVALUATOR_ASKS = "evaluate how well participants achieve their goals"


def evaluation_json(seed: int) -> str:
    rng = random.Random(seed)
    agent = {d.name: [f"{d.name} reasoning", rng.randint(d.low, d.high)] for d in DIMENSIONS}
    return json.dumps({"agent_1_evaluation": agent, "agent_2_evaluation": agent})


class Scripted(LLM):
    """Speaks for `speak_turns` turns of each agent slot, then leaves; rates validly. Keeps every request."""

    def __init__(self, name: str = "scripted", speak_turns: int = 2) -> None:
        self.spec = ModelSpec(backend="hf", model=name)
        self.speak_turns, self.requests = speak_turns, []

    def identity(self) -> dict[str, Any]:
        return {"scripted": self.spec.model, "speak_turns": self.speak_turns}

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        self.requests += requests
        return [self._answer(r) for r in requests]

    def _answer(self, request: LLMRequest) -> LLMResponse:
        text = request.messages[-1].content
        if EVALUATOR_ASKS in text:
            return LLMResponse(text=evaluation_json(request.seed), prompt_tokens=len(text) // 4, completion_tokens=90)
        asked = re.search(r"You are at Turn #(\d+)", text)
        if asked is None:  # the package's reformatting call
            return LLMResponse(text=json.dumps({"action_type": "speak", "argument": "reformatted"}))
        turn = int(asked.group(1))
        action = {"action_type": "speak", "argument": f"words of turn {turn}"}
        if turn >= 2 * self.speak_turns:
            action = {"action_type": "leave", "argument": ""}
        return LLMResponse(text=json.dumps(action), prompt_tokens=len(text) // 4, completion_tokens=12)


# -- released episodes -------------------------------------------------------------------------------
def _with_none_turns(turns: list[Turn], max_turns: int) -> list[Turn]:
    """The released transcript lists only visible actions: a `none` sits wherever a speaker would
    otherwise move twice; the package ends an episode at agent 2's first `none`, so a run that did not
    end by leaving ends so (what the package's environment needs to replay it)."""
    out: list[Turn] = []

    def add(agent: int, action: AgentAction, raw: str = "") -> None:
        out.append(Turn(index=len(out), agent=agent, action=action, raw=raw))

    for t in turns:
        while len(out) % 2 != t.agent:
            add(len(out) % 2, AgentAction(action_type="none"))
        add(t.agent, t.action, t.raw)
    if out and out[-1].action.action_type != "leave":
        while len(out) < max_turns and (out[-1].agent != 1 or out[-1].action.action_type != "none"):
            add(len(out) % 2, AgentAction(action_type="none"))
    return out


def released_episodes(data: SotopiaData, max_turns: int = 21) -> dict[str, EpisodeRecord]:
    """pk -> the released episode (sim.human_eval's import) with its `none` turns put back, as the
    package's environment replays it; the scenario and goals are SOTOPIA's profile texts."""
    from sotopia_pi_lib.data.human_eval import load_human_eval
    from sotopia_pi_lib.sim.human_eval import released_episodes as imported

    out = {}
    for ep in imported(load_human_eval(), data):
        env = data.environments[ep.env_id]
        out[ep.episode_id] = ep.model_copy(update={
            "turns": _with_none_turns(ep.turns, max_turns), "prompt_version": "sotopia==0.0.6",
            "scenario": env.scenario, "goals": env.agent_goals, "end_reason": "leave"})
    return out
