"""Supervised training examples (one kept agent turn -> its JSON action) and their JSONL files.

One line is one example in TRL's prompt/completion layout, so the file trains as-is with `SFTTrainer`
or any trainer that reads that layout: conversational (`prompt` a list of chat messages, `completion`
one assistant message) or plain text (two strings). The metadata columns beside them say where the
turn came from; trainers ignore them. A file is validated line by line before any model is loaded, so
a bad line costs a second, not a model load, and the error names the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ..errors import DataError
from ..llm.types import Message
from ..sim.episode import AgentAction
from ..store.files import atomic_write_text


class SFTExample(BaseModel):
    """One training example: the agent's prompt at one turn and the action it took."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str | list[Message]
    completion: str | list[Message]
    episode_id: str | None = None
    turn: int | None = None
    agent: int | None = None
    source: str | None = None
    value: float | None = None

    @model_validator(mode="after")
    def _check_layout(self) -> SFTExample:
        if isinstance(self.prompt, list):
            if not self.prompt:
                raise ValueError("prompt: empty message list")
            if not isinstance(self.completion, list) or len(self.completion) != 1:
                raise ValueError(
                    "completion: a chat prompt needs a completion of exactly one assistant message"
                )
            if self.completion[0].role != "assistant":
                raise ValueError(f"completion: role must be 'assistant', got {self.completion[0].role!r}")
        elif not isinstance(self.completion, str):
            raise ValueError("completion: a text prompt needs a text completion")
        elif not self.prompt.strip():
            raise ValueError("prompt: empty")
        self.action()  # raises ValueError unless the completion is a JSON action
        return self

    @property
    def completion_text(self) -> str:
        return self.completion[0].content if isinstance(self.completion, list) else self.completion

    def action(self) -> AgentAction:
        try:
            return AgentAction.model_validate_json(self.completion_text)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<root>"
            raise ValueError(
                f"completion is not a JSON action ({where}: {first['msg']}): {self.completion_text!r:.120}"
            ) from None

    @classmethod
    def chat(cls, messages: Iterable[Message], action_json: str, **metadata: object) -> SFTExample:
        """A conversational example: the prompt messages and the action as the assistant's reply."""
        return cls(
            prompt=list(messages), completion=[Message(role="assistant", content=action_json)], **metadata
        )


def _describe(e: ValidationError) -> str:
    """One line per problem; of a union's branches (text or messages) only the one that was meant."""
    errors = e.errors()
    specific = [err for err in errors if err["type"] not in ("string_type", "list_type")] or errors
    parts = []
    for err in specific:
        where = ".".join(str(p) for p in err["loc"] if p not in ("str", "list[Message]"))
        msg = {"missing": "missing key", "extra_forbidden": "unknown key"}.get(
            err["type"], err["msg"].removeprefix("Value error, ")
        )
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def parse_example_line(line: str, where: str) -> SFTExample:
    """Parse one JSONL line; `where` ("file:line") prefixes any error."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected a JSON object with 'prompt' and 'completion'")
    try:
        return SFTExample.model_validate(raw)
    except ValidationError as e:
        raise DataError(f"{where}: {_describe(e)}") from None


def read_examples(path: str | Path) -> list[SFTExample]:
    """Read and validate a training file; DataError names the file and line of the first bad example."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"training file {path} not found")
    examples = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                examples.append(parse_example_line(line, f"{path}:{lineno}"))
    if not examples:
        raise DataError(f"{path}: no training examples (the file is empty)")
    return examples


def write_examples(path: str | Path, examples: Iterable[SFTExample]) -> Path:
    """Write examples as JSONL, atomically (a crash never leaves a half-written training file)."""
    lines = [ex.model_dump_json(exclude_none=True) + "\n" for ex in examples]
    return atomic_write_text(path, "".join(lines))


def examples_from_released(path: str | Path, source: str = "released", drop_none: bool = True) -> list[SFTExample]:
    """Turn released training data (SOTOPIA-pi's {instruction, input, output} or sotopia-rl's
    {input, output, value} records) into examples, so users can train on the published GPT-4 data.

    Parsing and checks are `sim.released`'s; the released prompt (the agent's whole prompt as one
    string) becomes the single user message, which is how the released data fine-tuned a chat model
    (SOTOPIA-pi's llama2-sotopia template: "[INST] {prompt} [/INST]", no system text). `value` is
    sotopia-rl's per-turn value where the file has one.
    """
    from ..sim.released import load_released, released_training_pairs

    pairs = released_training_pairs(load_released(path), drop_none=drop_none)
    return [SFTExample.chat([Message(role="user", content=p.prompt)], p.completion, source=source, value=p.value)
            for p in pairs]
