"""An agent output that holds no valid action: reformatted by the reformatting model, else `none`, and
the episode goes on (SOTOPIA's agent: format_bad_output, then AgentAction("none") on failure).

The models here are scripted (they answer from a list), so each path is forced exactly; the real
model's free-text path runs in tests/test_sim_runner.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from sotopia_pi_lib.llm import LLM, LLMRequest, LLMResponse, ModelSpec
from sotopia_pi_lib.sim import (
    RuleConfig,
    RunConfig,
    make_specs,
    rule_violations,
    run_episodes,
    setups_for_task_set,
)


class Scripted(LLM):
    """Answers each request with the next text of its script; records what it was asked."""

    def __init__(self, name: str, script: list[str]):
        self.spec = ModelSpec(backend="hf", model=name)
        self.script, self.asked = list(script), []

    def identity(self) -> dict[str, Any]:
        return {"scripted": self.spec.model}

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        self.asked += list(requests)
        return [LLMResponse(text=self.script.pop(0)) for _ in requests]


SPEAK = '{"action_type": "speak", "argument": "Hello."}'


@pytest.fixture(scope="module")
def setup(sotopia):
    return setups_for_task_set(sotopia, "sotopia_all")[0]


@pytest.mark.parametrize("chained", [True, False])
@pytest.mark.parametrize("separate_fixer", [True, False])
def test_unparseable_output_is_reformatted_or_becomes_none(setup, chained, separate_fixer):
    config = RunConfig(rules=RuleConfig(max_turns=4), constrained=False, chained=chained, progress=False)
    agent_script = [SPEAK, "I think I would say hello", "gibberish", SPEAK, SPEAK]
    fixes = ['{"action_type": "speak", "argument": "hello"}', "still not json"]
    if separate_fixer:
        agent, fixer = Scripted("agent", agent_script), Scripted("fixer", fixes)
    else:  # the agent's own model reformats: its script interleaves the rewrites
        agent = Scripted("agent", [SPEAK, "I think I would say hello", fixes[0], "gibberish", fixes[1], SPEAK, SPEAK])
        fixer = None
    result = run_episodes(make_specs([setup], ("m", "m"), seed=4), {"m": agent}, config, reformatter=fixer)
    assert result.summary.failed == 0 and result.summary.completed == 1
    record = result.records[0]
    parses = [t.parse for t in record.turns]
    assert parses == ["ok", "reformatted", "unparseable", "ok", "ok"]
    assert record.turns[1].action.argument == "hello" and record.turns[1].raw == "I think I would say hello"
    assert record.turns[2].action.action_type == "none" and record.turns[2].reformatted == "still not json"
    assert record.turns[3].action.action_type == "speak"  # the episode went on after the `none`
    assert record.end_reason == "max_turns" and rule_violations(record, config.rules) == []
    asked = (fixer or agent).asked
    rewrites = [r for r in asked if "Reply to rewrite" in r.messages[-1].content]
    assert [r.messages[-1].content.splitlines()[1] for r in rewrites] == ["I think I would say hello", "gibberish"]
    assert all(r.json_schema is None for r in rewrites)  # free decoding: the rewrite is free text too
    assert result.summary.parse_counts == {"ok": 3, "reformatted": 1, "unparseable": 1}
    assert record.protocol == {"visibility": "official", "ending": "official", "decoding": "free",
                               "unparseable": "reformat_then_none"}


def test_constrained_decoding_sends_the_schema_and_free_decoding_does_not(setup):
    for constrained in (True, False):
        agent = Scripted("agent", [SPEAK] * 3)
        config = RunConfig(rules=RuleConfig(max_turns=2), constrained=constrained, progress=False)
        run_episodes(make_specs([setup], ("m", "m")), {"m": agent}, config)
        assert all((r.json_schema is not None) == constrained for r in agent.asked)
        assert all("JSON object" in r.messages[0].content for r in agent.asked)  # format instructions always


def test_a_backend_error_is_retried_not_reformatted(setup):
    class Flaky(Scripted):
        def generate(self, requests, *, progress=False):
            self.asked += list(requests)
            if len(self.asked) == 1:
                return [LLMResponse(finish_reason="error", error="HTTP 500")]
            return [LLMResponse(text=SPEAK) for _ in requests]

    agent = Flaky("agent", [])
    config = RunConfig(rules=RuleConfig(max_turns=1), constrained=False, progress=False)
    result = run_episodes(make_specs([setup], ("m", "m")), {"m": agent}, config)
    assert result.summary.failed == 0 and [t.parse for t in result.records[0].turns] == ["ok", "ok"]
    assert agent.asked[0].sample_index == 0 and agent.asked[1].sample_index == 1
