"""Training-example files: round trip, the released format, and errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.llm.types import Message
from sotopia_pi_lib.pi.sft_data import SFTExample, examples_from_released, read_examples, write_examples
from sotopia_pi_lib.sim.episode import AgentAction

RELEASED = Path("/work/shared/data/sotopia_pi/released_sft_format_sample.json")
ACTION = json.dumps({"action_type": "speak", "argument": "Hi Ben!"})


def _chat_example(**meta) -> SFTExample:
    return SFTExample.chat(
        [Message(role="system", content="Play Mia."), Message(role="user", content="Turn #0")], ACTION, **meta
    )


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_round_trip_keeps_chat_text_and_metadata(tmp_path):
    chat = _chat_example(episode_id="ep1", turn=3, agent=1, source="bc", value=7.5)
    text = SFTExample(prompt="You are Mia. Turn #0.", completion=ACTION, source="sr")
    path = write_examples(tmp_path / "train.jsonl", [chat, text])
    assert read_examples(path) == [chat, text]
    first = json.loads(path.read_text().splitlines()[0])
    # TRL's conversational prompt/completion layout: messages in, one assistant message out.
    assert first["prompt"][0] == {"role": "system", "content": "Play Mia."}
    assert first["completion"] == [{"role": "assistant", "content": ACTION}]
    assert "value" not in json.loads(path.read_text().splitlines()[1])  # unset metadata is left out


def test_action_parses_the_completion():
    assert _chat_example().action() == AgentAction(action_type="speak", argument="Hi Ben!")


def test_released_format_becomes_chat_examples():
    examples = examples_from_released(RELEASED)
    raw = json.loads(RELEASED.read_text())
    assert len(examples) == len(raw) == 4
    for ex, rec in zip(examples, raw, strict=True):
        # the released inputs end with a terminal colour code, logging residue that is stripped
        assert ex.prompt == [Message(role="user", content=rec["input"].replace("\x1b[0m", ""))]
        assert ex.completion_text == rec["output"]
        assert ex.value == rec["value"] and ex.source == "released"
        assert ex.action().action_type in {"speak", "non-verbal communication", "action", "leave", "none"}


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=rf"{path}: no training examples"):
        read_examples(path)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_examples(tmp_path / "nope.jsonl")


def test_missing_key_names_file_line_and_key(tmp_path):
    good = _chat_example().model_dump_json()
    path = _write_lines(tmp_path / "t.jsonl", [good, json.dumps({"prompt": "You are Mia."})])
    with pytest.raises(DataError, match=rf"{path}:2: completion: missing key"):
        read_examples(path)


@pytest.mark.parametrize(
    ("completion", "why"),
    [
        ("Hello Ben!", "not a JSON action"),
        (json.dumps({"action_type": "dance", "argument": "x"}), "action_type"),
        (json.dumps({"argument": "x"}), "action_type"),
    ],
)
def test_completion_must_be_a_json_action(tmp_path, completion, why):
    line = json.dumps({"prompt": "You are Mia.", "completion": completion})
    path = _write_lines(tmp_path / "t.jsonl", ["", line])
    with pytest.raises(DataError, match=rf"{path}:2: .*{why}"):
        read_examples(path)


def test_bad_json_and_layout_errors_name_the_line(tmp_path):
    path = _write_lines(tmp_path / "a.jsonl", ["{not json"])
    with pytest.raises(DataError, match=rf"{path}:1: not valid JSON"):
        read_examples(path)
    mixed = json.dumps({"prompt": [{"role": "user", "content": "hi"}], "completion": ACTION})
    path = _write_lines(tmp_path / "b.jsonl", [mixed])
    with pytest.raises(DataError, match=rf"{path}:1: .*exactly one assistant message"):
        read_examples(path)
    unknown = json.dumps({"prompt": "hi", "completion": ACTION, "reward": 1})
    path = _write_lines(tmp_path / "c.jsonl", [unknown])
    with pytest.raises(DataError, match=rf"{path}:1: reward: unknown key"):
        read_examples(path)


def test_released_file_errors(tmp_path):
    path = tmp_path / "released.json"
    path.write_text(json.dumps([{"input": "prompt only"}]))
    with pytest.raises(DataError, match=r"entry 0 has keys \['input'\]; expected"):
        examples_from_released(path)
    path.write_text(json.dumps([{"input": "p", "output": "not json", "value": 1}]))
    with pytest.raises(DataError, match="entry 0: output is not a JSON action"):
        examples_from_released(path)
