"""Chat templates that refuse a system message: found by rendering one with the tokenizer, merged into
the first user turn, and rendered the same way by the hf backend and by SFT encoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from sotopia_pi_lib.llm.chat_template import chat_for, encode_chat, merge_system, takes_system
from sotopia_pi_lib.llm.hf import HFModel
from sotopia_pi_lib.llm.types import LLMRequest, Message, ModelSpec, SamplingParams
from sotopia_pi_lib.pi.sft_data import SFTExample
from sotopia_pi_lib.pi.sft_encode import _ids, encode_example

# Mistral-7B-Instruct-v0.1's template, in substance: roles must alternate user/assistant, else it raises.
REFUSING = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)
DROPPING = "{% for m in messages %}{% if m['role'] != 'system' %}<{{ m['role'] }}>{{ m['content'] }}{% endif %}{% endfor %}"
CHAT = [
    Message(role="system", content="You are Mia, at a bakery."),
    Message(role="user", content="Turn 1: what do you do?"),
]
ACTION = '{"action_type": "speak", "argument": "Hello!"}'


@pytest.fixture()
def tokenizer(embedded_model_dir: Path):
    return AutoTokenizer.from_pretrained(embedded_model_dir)


def test_merge_puts_the_system_text_in_front_of_the_first_user_turn() -> None:
    chat = [m.model_dump() for m in CHAT] + [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "and?"}]
    assert merge_system(chat) == [
        {"role": "user", "content": "You are Mia, at a bakery.\n\nTurn 1: what do you do?"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "and?"},
    ]
    assert merge_system([{"role": "system", "content": "S"}]) == [{"role": "user", "content": "S"}]


@pytest.mark.model
def test_a_refusing_or_dropping_template_is_detected_from_the_tokenizer(tokenizer) -> None:
    assert takes_system(tokenizer)  # SmolLM2's template renders a system message
    assert chat_for(tokenizer, CHAT) == [m.model_dump() for m in CHAT]
    for template in (REFUSING, DROPPING):
        tokenizer.chat_template = template  # asked again: the answer is remembered per template
        assert not takes_system(tokenizer)
        assert chat_for(tokenizer, CHAT) == merge_system([m.model_dump() for m in CHAT])
    tokenizer.chat_template = REFUSING
    with pytest.raises(Exception, match="alternate"):  # what rendering it as it is would do
        tokenizer.apply_chat_template([m.model_dump() for m in CHAT], tokenize=False)
    ids = encode_chat(tokenizer, CHAT)
    text = tokenizer.decode(ids)
    assert "[INST] You are Mia, at a bakery.\n\nTurn 1: what do you do? [/INST]" in text


@pytest.mark.model
def test_the_hf_backend_and_sft_encoding_render_the_same_prompt(tmp_path: Path, embedded_model_dir: Path) -> None:
    """A copy of the embedded model whose template refuses a system message: the backend answers a
    system-led prompt, and its prompt tokens are exactly the training example's prompt tokens."""
    folder = tmp_path / "refusing"
    folder.mkdir()
    for f in embedded_model_dir.iterdir():
        if f.name != "chat_template.jinja":
            (folder / f.name).symlink_to(f)
    (folder / "chat_template.jinja").write_text(REFUSING)
    model = HFModel(ModelSpec(backend="hf", model=str(folder), options={"dtype": "float32"}))
    schema = {"type": "object", "properties": {"action_type": {"enum": ["speak"]}, "argument": {"type": "string"}},
              "required": ["action_type", "argument"]}  # fmt: skip
    reply = model.generate([LLMRequest(messages=tuple(CHAT), json_schema=schema,
                                       sampling=SamplingParams(temperature=0.0, max_tokens=24))])[0]
    assert reply.ok and json.loads(reply.text)["action_type"] == "speak"
    tokenizer = model._loaded.tokenizer  # type: ignore[union-attr]
    example = SFTExample.chat(CHAT, ACTION)
    prompt_ids, full_ids = _ids(tokenizer, example)
    assert model.prompt_ids(CHAT) == prompt_ids
    assert tokenizer.decode(full_ids).startswith(tokenizer.decode(prompt_ids).removesuffix(" [/INST]"))
    row, outcome = encode_example(example, tokenizer, max_length=512)
    assert outcome == "kept" and ACTION[2:] in tokenizer.decode([t for t in row["labels"] if t >= 0])
