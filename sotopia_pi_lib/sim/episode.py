"""The episode record: what one simulated SOTOPIA interaction leaves on disk.

Episodes are append-only: ratings are stored as separate records keyed by `episode_id` (see
`sotopia_pi_lib.judge`), so re-judging never rewrites an episode and several judges can coexist.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..data.profiles import AgentProfile, RelationshipType
from ..llm.types import Message

ActionType = Literal["none", "speak", "non-verbal communication", "action", "leave"]
ACTION_TYPES: tuple[str, ...] = ("none", "speak", "non-verbal communication", "action", "leave")
# "released": an imported episode whose source records its turns but not why it ended (SOTOPIA-pi's
# released human-evaluation transcripts drop the empty turns that would tell a turn limit from a stall).
EndReason = Literal["leave", "max_turns", "stale", "released"]
# How a turn's action was obtained: parsed from the model's output, parsed from a reformatting
# model's rewrite of it, or (both failed) `none`, as SOTOPIA's agent does with unparseable output.
ParseOutcome = Literal["ok", "reformatted", "unparseable"]


class AgentAction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    action_type: ActionType
    argument: str = ""


class Turn(BaseModel):
    """One agent's move.

    The project's prompts are not stored: the versioned renderer rebuilds them exactly from the record
    (static episode info + the turns before this one), which keeps episode files small and lets
    training examples use exactly what the agent saw. The sotopia style's prompts are rendered by the
    official package, so its turns carry the messages the model received (`prompt`).
    """

    index: int = Field(ge=0, description="0-based turn number across both agents")
    agent: int = Field(ge=0, le=1, description="agent position: 0 moves first")
    action: AgentAction
    raw: str = Field(description="the model's raw output text")
    parse: ParseOutcome = "ok"
    reformatted: str | None = Field(None, description="the reformatting model's output, when one was asked")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    prompt: tuple[Message, ...] | None = Field(
        None, description="the exact messages the model received (the sotopia style; None: rebuilt by the renderer)"
    )
    reformatted: str | None = Field(
        None, description="sotopia style: the reformatting model's output, when the agent's did not parse"
    )


class EpisodeRecord(BaseModel):
    """One finished episode of one scenario with two characters."""

    episode_id: str
    env_id: str
    combo_id: str | None = None
    codename: str = ""
    scenario: str
    agent_ids: tuple[str, str]
    agent_names: tuple[str, str]
    goals: tuple[str, str]
    models: tuple[str, str] = Field(description="model label playing each agent position")
    prompt_version: str
    seed: int
    turns: list[Turn]
    end_reason: EndReason
    tags: dict[str, str] = Field(default_factory=dict, description="e.g. source=bc, round=1, task_set")
    duration_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Added with the simulation (optional, so older or imported records still load): with them a
    # record is self-contained, and the prompt of any turn can be rebuilt without the profile files.
    agent_profiles: tuple[AgentProfile, AgentProfile] | None = Field(
        None, description="both characters' full profiles (secrets included), as the episode used them"
    )
    relationship: RelationshipType | None = Field(None, description="the scenario's relationship type")
    protocol: dict[str, str] = Field(
        default_factory=dict,
        description="the protocol options the episode was played under (visibility, ending, decoding, "
        "unparseable output); what its agents saw is rebuilt from them",
    )
