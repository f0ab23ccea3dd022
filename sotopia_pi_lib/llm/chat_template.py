"""Chat prompts as token ids, for chat templates that take a system message and for those that refuse it.

Every agent and judge prompt opens with a system message, and some chat templates reject one
(Mistral-7B-Instruct-v0.1's raises "Conversation roles must alternate user/assistant/...") or drop it
without a word. Whether a template takes it is found by rendering a probe conversation with the
tokenizer itself, never from the model's name: a template that raises, or whose output lacks the
probe's system text, refuses it. Then the system text is merged into the first user turn, which is
what SOTOPIA-π's training template did (its `llama2-sotopia` template put `{{system}}` in front of
the first query). It joined the two with nothing between them; its system text was empty, so that
never showed, and here they are joined by a blank line.

The hf backend, the vllm backend and SFT encoding (pi/sft_encode.py) all render through here, so a
trained model sees at test time exactly what it was trained on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from ..errors import BackendError

PROBE_SYSTEM = "sotopia-pi-lib system probe 7f3a"
_PROBE = [{"role": "system", "content": PROBE_SYSTEM}, {"role": "user", "content": "hello"}]
_ATTRIBUTE = "_sotopia_pi_takes_system"  # the answer, remembered on the tokenizer object
Chat = list[dict[str, str]]


def takes_system(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a system message (asked once per tokenizer and
    template: changing `tokenizer.chat_template` asks again)."""
    template = getattr(tokenizer, "chat_template", None)
    known = getattr(tokenizer, _ATTRIBUTE, None)
    if known is not None and known[0] == template:
        return known[1]
    try:
        text = tokenizer.apply_chat_template(_PROBE, tokenize=False, add_generation_prompt=True)
        answer = PROBE_SYSTEM in text
    except Exception:  # noqa: BLE001 -- jinja's TemplateError, or a raise_exception in the template
        answer = False
    with contextlib.suppress(AttributeError):  # a tokenizer that takes no attributes is asked every time
        setattr(tokenizer, _ATTRIBUTE, (template, answer))
    return answer


def merge_system(messages: Sequence[dict[str, str]]) -> Chat:
    """The system messages' text in front of the first user turn (a conversation without a user turn
    gets one); the other turns unchanged."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]


def chat_for(tokenizer: Any, messages: Sequence[Any]) -> Chat:
    """The conversation as the tokenizer's template will take it (messages: Message or dicts)."""
    chat = [m if isinstance(m, dict) else m.model_dump() for m in messages]
    if any(m["role"] == "system" for m in chat) and not takes_system(tokenizer):
        return merge_system(chat)
    return chat


def encode_chat(tokenizer: Any, messages: Sequence[Any], *, add_generation_prompt: bool = True) -> list[int]:
    """Token ids of the rendered conversation (with the assistant header when asked)."""
    try:
        ids = tokenizer.apply_chat_template(
            chat_for(tokenizer, messages), add_generation_prompt=add_generation_prompt, tokenize=True,
            return_dict=False,
        )  # fmt: skip
    except Exception as e:  # noqa: BLE001 -- name the template, not a deep jinja traceback
        raise BackendError(f"the chat template failed: {type(e).__name__}: {e}") from e
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # a tokenizer that returns a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)
