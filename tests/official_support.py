"""Test helpers for the sotopia style: a scripted model for the server, and released episodes.

`Scripted` answers like a well-behaved model, instantly: an action as the package asks for one, a
valid SOTOPIA-EVAL object when its evaluator asks. It stands in for the model where a test is about
what reaches the model and what the package makes of the answer, not about what a model says
(tests/test_official_style.py drives the real embedded model too).

`released_episodes` reads the SOTOPIA-pi human-evaluation CSVs into EpisodeRecords (the importer of
those files belongs to the analysis side; this local reader keeps only what the evaluator needs).
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sotopia_pi_lib.data.sotopia import SotopiaData
from sotopia_pi_lib.judge.rubric import DIMENSIONS
from sotopia_pi_lib.llm.base import LLM
from sotopia_pi_lib.llm.types import LLMRequest, LLMResponse, ModelSpec
from sotopia_pi_lib.sim.episode import AgentAction, EpisodeRecord, Turn

HUMAN_EVAL = Path("/work/shared/data/sotopia_pi/human_eval")
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
_NON_SPEECH = re.compile(r"^\s*(?P<name>.+?) \[(?P<kind>non-verbal communication|action)\] (?P<arg>.*)$", re.S)
_RENDER_TAIL = re.compile(r"\nTurn #\d+,?$")  # the CSV's parser kept the next turn's header on a last line


def _action(dialogue: str) -> AgentAction:
    dialogue = _RENDER_TAIL.sub("", dialogue)
    if "left the conversation" in dialogue and not dialogue.startswith('"'):
        return AgentAction(action_type="leave")
    if dialogue.startswith('"') and dialogue.endswith('"'):
        return AgentAction(action_type="speak", argument=dialogue[1:-1])
    match = _NON_SPEECH.match(dialogue)
    if match is None:  # the CSV's own parser cut a speech it could not read: keep what it kept
        return AgentAction(action_type="speak", argument=dialogue)
    return AgentAction(action_type=match["kind"], argument=match["arg"].removesuffix("\n"))


def _turns(entries: list[dict[str, str]], names: list[str], max_turns: int) -> list[Turn]:
    """The CSV lists only visible actions: a `none` sits wherever a speaker would otherwise move twice;
    the package ends an episode at agent 2's first `none`, so a run that did not end by leaving ends so."""
    turns: list[Turn] = []

    def add(agent: int, action: AgentAction) -> None:
        turns.append(Turn(index=len(turns), agent=agent, action=action, raw=""))

    for entry in entries:
        speaker = names.index(entry["speaker"])
        while len(turns) % 2 != speaker:
            add(len(turns) % 2, AgentAction(action_type="none"))
        add(speaker, _action(entry["dialogue"]))
    if turns and turns[-1].action.action_type != "leave":
        while len(turns) < max_turns and (not turns or turns[-1].agent != 1 or turns[-1].action.action_type != "none"):
            add(len(turns) % 2, AgentAction(action_type="none"))
    return turns


def released_episodes(data: SotopiaData, max_turns: int = 21) -> dict[str, EpisodeRecord]:
    """pk -> the released episode as a record (the first annotator's row; both carry the same data)."""
    renderings = {r["pk"]: r for r in map(json.loads, (HUMAN_EVAL / "official_renderings.jsonl").open())}
    by_name = {a.name: a for a in data.agents.values()}
    out: dict[str, EpisodeRecord] = {}
    for path in sorted(HUMAN_EVAL.glob("*_final.csv")):
        for row in csv.DictReader(path.open(encoding="utf-8")):
            info = json.loads(row["data"])
            pk = row["pk"]
            if pk in out or "parsed_conversation" not in info or pk not in renderings:
                continue
            env = data.environments[renderings[pk]["environment_pk"]]
            names = info["names"]
            out[pk] = EpisodeRecord(
                episode_id=pk, env_id=env.env_id, codename=env.codename, scenario=env.scenario,
                agent_ids=(by_name[names[0]].agent_id, by_name[names[1]].agent_id), agent_names=tuple(names),
                goals=env.agent_goals, models=tuple(renderings[pk]["models"][1:]), prompt_version="sotopia==0.0.6",
                seed=0, turns=_turns(info["parsed_conversation"], names, max_turns), end_reason="leave",
                agent_profiles=(by_name[names[0]], by_name[names[1]]), relationship=env.relationship,
            )  # fmt: skip
    return out
