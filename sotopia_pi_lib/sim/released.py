"""Import the released SOTOPIA-pi SFT data: a JSON list of {input, output, value}.

`input` is the agent's full prompt at one turn (SOTOPIA's own prompt wording), `output` the JSON
action the expert took, `value` the judge's goal score of that agent's episode. Importing it lets a
user train on the published GPT-4 data directly. Every entry is validated up front, so a bad entry is
an error naming the file and its index before any training starts, never a crash mid-run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import DataError
from .episode import AgentAction

# The released prompts end with a terminal colour reset ("\x1b[0m") left by SOTOPIA's coloured logging.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ReleasedExample(BaseModel):
    """One released training example, with its action parsed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0, description="position in the released file")
    input: str = Field(min_length=1)
    output: str
    value: float
    action: AgentAction


class TrainingPair(BaseModel):
    """A prompt/completion pair in the format TRL's SFTTrainer reads (loss on the completion only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str
    completion: str
    value: float | None = None
    source: str = ""


def _entry(raw: object, index: int, where: str) -> ReleasedExample:
    if not isinstance(raw, dict):
        raise DataError(f"{where}: entry {index} is a {type(raw).__name__}, not an object")
    missing = [k for k in ("input", "output", "value") if k not in raw]
    extra = sorted(set(raw) - {"input", "output", "value"})
    if missing or extra:
        raise DataError(f"{where}: entry {index}: missing keys {missing}, unexpected keys {extra}")
    if not isinstance(raw["output"], str):
        raise DataError(f"{where}: entry {index}: output must be a string holding a JSON action")
    try:
        obj = json.loads(raw["output"])
    except json.JSONDecodeError as e:
        raise DataError(
            f"{where}: entry {index}: output is not a JSON action ({e.msg}): {raw['output']!r:.80}"
        ) from None
    if not isinstance(obj, dict) or set(obj) != {"action_type", "argument"}:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(
            f"{where}: entry {index}: output must hold exactly action_type and argument, got {keys}"
        )
    try:
        action = AgentAction.model_validate(obj)
    except ValidationError as e:
        problem = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'output'}: {err['msg']}" for err in e.errors()[:2]
        )
        raise DataError(
            f"{where}: entry {index}: output is not a JSON action ({problem}): {raw['output']!r:.80}"
        ) from None
    try:
        return ReleasedExample(
            index=index, input=raw["input"], output=raw["output"], value=raw["value"], action=action
        )
    except ValidationError as e:
        problem = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:2])
        raise DataError(f"{where}: entry {index}: {problem}") from None


def load_released(path: str | Path) -> list[ReleasedExample]:
    """Parse and validate every entry; DataError naming the file and entry index on the first bad one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise DataError(
            f"{path}: expected a JSON list of {{input, output, value}} entries, got {type(data).__name__}"
        )
    return [_entry(raw, i, str(path)) for i, raw in enumerate(data)]


def released_training_pairs(
    examples: list[ReleasedExample], *, drop_none: bool = True, keep_ansi: bool = False
) -> list[TrainingPair]:
    """One pair per example: prompt = the released input, completion = the released JSON action.

    `none` actions are dropped by default, as for the project's own data (they teach doing nothing).
    Terminal escape codes are removed from prompts unless keep_ansi: they are logging residue, and a
    model trained on them would expect them at test time.
    """
    pairs = []
    for ex in examples:
        if drop_none and ex.action.action_type == "none":
            continue
        prompt = ex.input if keep_ansi else _ANSI.sub("", ex.input)
        pairs.append(
            TrainingPair(prompt=prompt, completion=ex.output, value=ex.value, source=f"released[{ex.index}]")
        )
    return pairs
