"""Kept episodes -> supervised examples (SOTOPIA-pi, section 3.4).

Each kept turn of the kept agent becomes one example: input = exactly the prompt the simulation
rendered for that turn (rebuilt by the same versioned renderer), output = the JSON action. Turns
whose action is `none` teach nothing and are dropped. A prompt over the token budget loses its
oldest history turns, never the instructions, the profiles or the goal.

Sotopia-style turns carry the prompt the model received (one user message, the package's rendering),
which is used as it is: the format SOTOPIA-pi's released models were trained on (their llama2-sotopia
template wraps it as `[INST] {prompt} [/INST]` with no system text). It cannot be shortened without
rendering it anew, so one over the budget is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
from pydantic import BaseModel

from ..data.profiles import AgentProfile
from ..sim.episode import EpisodeRecord
from ..sim.prompts import render_prompt
from ..sim.rules import setup_from_record
from ..sim.visibility import Visibility
from .sft_data import SFTExample


class ConversionStats(BaseModel):
    kept_units: int = 0
    examples: int = 0
    dropped_none: int = 0
    truncated: int = 0
    dropped_too_long: int = 0


def _fit(record: EpisodeRecord, turn_index: int, agents: Mapping[str, AgentProfile] | None,
         count_tokens: Callable[[str], int] | None, max_prompt_tokens: int | None):
    """The turn's prompt, with the oldest history turns dropped until it fits (None if it never does)."""
    received = record.turns[turn_index].prompt
    if received is not None:  # the sotopia style: exactly what the model received
        fits = count_tokens is None or max_prompt_tokens is None or (
            sum(count_tokens(m.content) for m in received) <= max_prompt_tokens
        )
        return (received if fits else None), False
    setup = setup_from_record(record, dict(agents) if agents else None)
    agent = record.turns[turn_index].agent
    history = record.turns[:turn_index]
    visibility = Visibility(record.protocol.get("visibility", Visibility.official))
    for start in range(len(history) + 1):
        messages = render_prompt(setup, agent, history[start:], record.prompt_version, visibility)
        if count_tokens is None or max_prompt_tokens is None:
            return messages, False
        if sum(count_tokens(m.content) for m in messages) <= max_prompt_tokens:
            return messages, start > 0
    return None, False


def to_examples(
    episodes: Sequence[EpisodeRecord],
    kept: pd.DataFrame,
    *,
    source: str,
    agents: Mapping[str, AgentProfile] | None = None,
    count_tokens: Callable[[str], int] | None = None,
    max_prompt_tokens: int | None = None,
) -> tuple[list[SFTExample], ConversionStats]:
    """One example per kept (episode, agent) turn; `kept` has columns episode_id, agent, goal."""
    by_id = {e.episode_id: e for e in episodes}
    stats = ConversionStats()
    out: list[SFTExample] = []
    for row in kept.itertuples():
        record = by_id[row.episode_id]
        stats.kept_units += 1
        for turn in record.turns:
            if turn.agent != row.agent:
                continue
            if turn.action.action_type == "none":
                stats.dropped_none += 1
                continue
            messages, truncated = _fit(record, turn.index, agents, count_tokens, max_prompt_tokens)
            if messages is None:
                stats.dropped_too_long += 1
                continue
            stats.truncated += truncated
            action = json.dumps(turn.action.model_dump(), ensure_ascii=False)
            out.append(SFTExample.chat(messages, action, episode_id=record.episode_id, turn=turn.index,
                                       agent=turn.agent, source=source, value=float(row.goal)))
            stats.examples += 1
    return out, stats
