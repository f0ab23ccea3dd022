"""Simulation: two-agent SOTOPIA episodes (rules, versioned prompts, batched runner, episode store)."""

from .episode import ACTION_TYPES, AgentAction, EndReason, EpisodeRecord, Turn
from .episode_store import EpisodeFailure, EpisodeStore, RunSummary
from .pairing import (
    candidate_pairs,
    parse_task,
    sample_pairs,
    setup_for_combo,
    setup_for_pair,
    setups_for_task_set,
)
from .prompts import (
    DEFAULT_PROMPT_VERSION,
    PromptStyle,
    action_schema,
    describe_action,
    get_style,
    prompt_versions,
    register_style,
    render_history,
    render_prompt,
    render_turn_prompt,
)
from .rules import EpisodeSetup, RuleConfig, agent_to_move, allowed_actions, end_reason, rule_violations
from .runner import EpisodeSpec, RunConfig, RunResult, episode_id, make_specs, run_episodes

__all__ = [
    "ACTION_TYPES",
    "DEFAULT_PROMPT_VERSION",
    "AgentAction",
    "EndReason",
    "EpisodeFailure",
    "EpisodeRecord",
    "EpisodeSetup",
    "EpisodeSpec",
    "EpisodeStore",
    "PromptStyle",
    "RuleConfig",
    "RunConfig",
    "RunResult",
    "RunSummary",
    "Turn",
    "action_schema",
    "agent_to_move",
    "allowed_actions",
    "candidate_pairs",
    "describe_action",
    "end_reason",
    "episode_id",
    "get_style",
    "make_specs",
    "parse_task",
    "prompt_versions",
    "register_style",
    "render_history",
    "render_prompt",
    "render_turn_prompt",
    "rule_violations",
    "run_episodes",
    "sample_pairs",
    "setup_for_combo",
    "setup_for_pair",
    "setups_for_task_set",
]
