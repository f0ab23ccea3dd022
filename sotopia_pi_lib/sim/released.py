"""Import released SOTOPIA-style SFT data: a JSON list of examples in one of two formats.

- SOTOPIA-pi's own files, `{instruction, input, output}` (sotopia-lab/sotopia-pi,
  data_process/utils/data_filtering.py writes them with an empty instruction): `input` is the agent's
  full prompt at one turn in SOTOPIA's wording, `output` the JSON action. LLaMA-Factory, which trained
  the released models, builds the prompt as `instruction + "\n" + input` when `input` is non-empty
  (llm_rl/src/llmtuner/dsets/preprocess.py), so that is the prompt imported here.
- sotopia-rl's `{input, output, value}` (sotopia-lab/sotopia-rl), the same prompt/action pair with
  `value`, a per-turn value from its reward model — not the episode's goal score.

Importing lets a user train on the published data directly. Every entry is validated up front, so a
bad entry is an error naming the file and its index before any training starts, never a crash mid-run.
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


FORMATS = {"sotopia-pi": ("instruction", "input", "output"), "sotopia-rl": ("input", "output", "value")}


class ReleasedExample(BaseModel):
    """One released training example, with its action parsed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0, description="position in the released file")
    format: str = Field(description="sotopia-pi {instruction, input, output} or sotopia-rl {input, output, value}")
    instruction: str = ""
    input: str = Field(min_length=1)
    output: str
    value: float | None = Field(None, description="sotopia-rl's per-turn value; None in SOTOPIA-pi's files")
    action: AgentAction

    @property
    def prompt(self) -> str:
        """The prompt the example trains on (LLaMA-Factory: instruction, newline, input)."""
        return self.instruction + "\n" + self.input if self.format == "sotopia-pi" else self.input


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
    fmt = next((name for name, keys in FORMATS.items() if set(raw) == set(keys)), None)
    if fmt is None:
        raise DataError(f"{where}: entry {index} has keys {sorted(raw)}; expected SOTOPIA-pi's "
                        "{instruction, input, output} or sotopia-rl's {input, output, value}")
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
        return ReleasedExample(index=index, format=fmt, instruction=raw.get("instruction", ""), input=raw["input"],
                               output=raw["output"], value=raw.get("value"), action=action)
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
        raise DataError(f"{path}: expected a JSON list of training examples, got {type(data).__name__}")
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
        prompt = ex.prompt if keep_ansi else _ANSI.sub("", ex.prompt)
        pairs.append(
            TrainingPair(prompt=prompt, completion=ex.output, value=ex.value, source=f"released[{ex.index}]")
        )
    return pairs
