"""Importing released SFT data: SOTOPIA-pi's {instruction, input, output} and sotopia-rl's
{input, output, value} (the real 4-entry sample is sotopia-rl's), and corrupted copies."""

from __future__ import annotations

import json

import pytest

from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.paths import data_dir
from sotopia_pi_lib.sim.released import load_released, released_training_pairs

SAMPLE = data_dir() / "sotopia_pi" / "released_sft_format_sample.json"


@pytest.fixture
def raw() -> list[dict]:
    return json.loads(SAMPLE.read_text())


def test_real_sample_parses_into_actions_and_pairs():
    examples = load_released(SAMPLE)
    assert len(examples) == 4
    assert [e.value for e in examples] == [9.0, 1.0, -1.0, 0.0]
    assert all(e.action.action_type == "speak" for e in examples)
    assert examples[0].action.argument.startswith("Hello Benjamin, great minds think alike")
    assert all(e.input.startswith("Imagine you are Mia Davis") for e in examples)

    pairs = released_training_pairs(examples)
    assert len(pairs) == 4
    for pair, ex in zip(pairs, examples, strict=True):
        assert pair.completion == ex.output
        assert json.loads(pair.completion) == {"action_type": "speak", "argument": ex.action.argument}
        assert "\x1b" not in pair.prompt and "\x1b[0m" in ex.input  # colour codes are logging residue
        assert pair.prompt == ex.input.replace("\x1b[0m", "")
        assert pair.value == ex.value and pair.source == f"released[{ex.index}]"
    assert "You are at Turn #6" in pairs[3].prompt
    kept = released_training_pairs(examples, keep_ansi=True)
    assert kept[0].prompt == examples[0].input


def test_sotopia_pi_format_trains_on_instruction_newline_input(tmp_path, raw):
    """SOTOPIA-pi's own files: {instruction: "", input, output}; LLaMA-Factory trained on
    instruction + "\\n" + input, so that is the prompt; there is no value."""
    own = [{"instruction": "", "input": e["input"], "output": e["output"]} for e in raw]
    own[1]["instruction"] = "Play the agent."
    path = tmp_path / "sotopia_pi.json"
    path.write_text(json.dumps(own))
    examples = load_released(path)
    assert {e.format for e in examples} == {"sotopia-pi"} and all(e.value is None for e in examples)
    pairs = released_training_pairs(examples, keep_ansi=True)
    assert pairs[0].prompt == "\n" + own[0]["input"] and pairs[1].prompt == "Play the agent.\n" + own[1]["input"]
    assert pairs[0].value is None
    mixed = [own[0], raw[1] | {"instruction": ""}]
    path.write_text(json.dumps(mixed))
    with pytest.raises(DataError, match="entry 1 has keys"):
        load_released(path)


def test_none_actions_are_dropped_unless_asked(tmp_path, raw):
    raw[1]["output"] = json.dumps({"action_type": "none", "argument": ""})
    path = tmp_path / "sft.json"
    path.write_text(json.dumps(raw))
    examples = load_released(path)
    assert [p.source for p in released_training_pairs(examples)] == [
        "released[0]",
        "released[2]",
        "released[3]",
    ]
    assert len(released_training_pairs(examples, drop_none=False)) == 4


@pytest.mark.parametrize(
    "index, corrupt, message",
    [
        (2, lambda e: e.update(output="I would say hello"), "entry 2: output is not a JSON action"),
        (
            1,
            lambda e: e.update(output='{"action_type": "dance", "argument": "x"}'),
            "entry 1: output is not a JSON",
        ),
        (
            3,
            lambda e: e.update(output='{"action_type": "speak"}'),
            "entry 3: output must hold exactly action_type and argument, got \\['action_type'\\]",
        ),
        (
            0,
            lambda e: e.update(output='{"action_type": "speak", "argument": "hi", "x": 1}'),
            "entry 0: output must",
        ),
        (
            2,
            lambda e: e.update(output='{"action_type": "speak", "argument": 5}'),
            "entry 2: output is not a JSON",
        ),
        (3, lambda e: e.pop("value"), "entry 3 has keys \\['input', 'output'\\]; expected"),
        (1, lambda e: e.update(value="high"), "entry 1: value"),
        (2, lambda e: e.update(input=""), "entry 2: input"),
        (
            0,
            lambda e: e.update(output={"action_type": "speak", "argument": "hi"}),
            "entry 0: output must be a string",
        ),
    ],
)
def test_corrupted_entry_is_named_by_index(tmp_path, raw, index, corrupt, message):
    corrupt(raw[index])
    path = tmp_path / "sft.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=message) as e:
        load_released(path)
    assert str(path) in str(e.value)


def test_truncated_or_wrong_shaped_file_is_a_clear_error(tmp_path):
    path = tmp_path / "sft.json"
    text = SAMPLE.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match=r"sft\.json:\d+:\d+: not valid JSON"):
        load_released(path)
    path.write_text(json.dumps({"input": "x", "output": "{}", "value": 1}))
    with pytest.raises(DataError, match="expected a JSON list"):
        load_released(path)
    path.write_text(json.dumps(["just a string"]))
    with pytest.raises(DataError, match="entry 0 is a str"):
        load_released(path)
    with pytest.raises(DataError, match="no such file"):
        load_released(tmp_path / "missing.json")
