"""The episode file of a run: one EpisodeRecord per line, appended as each episode finishes.

Resuming is the point: a re-run reads the completed episode ids and plays only the rest, so a crash
or Ctrl-C costs only the episodes that were in flight. Failed episodes are never written as
episodes; they go to a side file so a report can list them and a re-run tries them again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from ..redact import scrub_text
from ..store.records import RecordFile
from .episode import EpisodeRecord, Turn

log = logging.getLogger(__name__)


class EpisodeFailure(BaseModel):
    """An episode abandoned because its model failed twice on one turn."""

    episode_id: str
    env_id: str
    agent_ids: tuple[str, str]
    models: tuple[str, str]
    turn: int
    error: str
    tags: dict[str, str] = Field(default_factory=dict)

    _no_secrets = field_validator("error")(scrub_text)  # a backend error may echo a URL or key


class EpisodeStore(RecordFile[EpisodeRecord, EpisodeFailure]):
    """Append-only episode JSONL at `path` keyed by episode id, failures next to it in
    `<stem>.failures.jsonl`."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, EpisodeRecord, EpisodeFailure, key=lambda r: r.episode_id, what="episode")

    def completed_ids(self) -> set[str]:
        return {r.episode_id for r in self}


class RunSummary(BaseModel):
    """What one run_episodes call did; printed at the end and kept by the caller for the report."""

    requested: int = 0
    skipped: int = Field(0, description="already in the store from an earlier run")
    completed: int = 0
    failed: int = 0
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_turns: int = 0
    duration_s: float = 0.0
    end_reasons: dict[str, int] = Field(default_factory=dict)
    action_counts: dict[str, int] = Field(default_factory=dict)
    parse_counts: dict[str, int] = Field(default_factory=dict, description="turns by how their action was parsed")
    failures: list[EpisodeFailure] = Field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.duration_s if self.duration_s > 0 else 0.0

    def add_turn(self, turn: Turn) -> None:
        self.turns += 1
        self.prompt_tokens += turn.prompt_tokens
        self.completion_tokens += turn.completion_tokens
        self.cached_turns += turn.cached
        kind = turn.action.action_type
        self.action_counts[kind] = self.action_counts.get(kind, 0) + 1
        self.parse_counts[turn.parse] = self.parse_counts.get(turn.parse, 0) + 1

    def add_episode(self, record: EpisodeRecord) -> None:
        self.completed += 1
        self.end_reasons[record.end_reason] = self.end_reasons.get(record.end_reason, 0) + 1

    def add_failure(self, failure: EpisodeFailure) -> None:
        self.failed += 1
        self.failures.append(failure)

    def __str__(self) -> str:
        lines = [
            f"episodes: {self.completed} completed, {self.failed} failed, {self.skipped} already done "
            f"(of {self.requested}); {self.turns} turns ({self.cached_turns} from cache) in {self.duration_s:.1f} s "
            f"= {self.turns_per_s:.2f} turns/s",
            f"tokens: {self.prompt_tokens} prompt, {self.completion_tokens} completion "
            f"({self.tokens_per_s:.1f} completion tokens/s)",
            f"end reasons: {self.end_reasons}; actions: {self.action_counts}; parsed: {self.parse_counts}",
        ]
        lines += [
            f"  failed {f.episode_id} ({f.env_id}) at turn {f.turn}: {f.error}" for f in self.failures[:10]
        ]
        return "\n".join(lines)


class RoutedStore:
    """Several episode files behind one store interface: each record goes to the file its tags name.

    One batched `run_episodes` call can then play, say, every model of an evaluation at once (one
    backend batch per model per step) while each model and task set keeps its own append-only file.
    """

    def __init__(self, files: Mapping[tuple[str, ...], Path], tag_keys: tuple[str, ...]) -> None:
        self.tag_keys = tag_keys
        self.stores = {key: EpisodeStore(path) for key, path in files.items()}

    def _route(self, tags: Mapping[str, str]) -> EpisodeStore:
        key = tuple(tags.get(k, "") for k in self.tag_keys)
        if key not in self.stores:
            raise KeyError(f"no episode file for tags {dict(zip(self.tag_keys, key, strict=True))}")
        return self.stores[key]

    def completed_ids(self) -> set[str]:
        return set().union(*(s.completed_ids() for s in self.stores.values()))

    def append(self, record: EpisodeRecord) -> None:
        self._route(record.tags).append(record)

    def append_failure(self, failure: EpisodeFailure) -> None:
        self._route(failure.tags).append_failure(failure)
