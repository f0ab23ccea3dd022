"""Structured-output helpers shared by the openai and vllm backends and the server.

Replies are validated even from constrained decoders: a reply cut off by max_tokens, or a server that
ignores response_format, must be caught before anything downstream trusts it. Schema rules live in
schema.py (shared with the hf backend), and so does the parser (`schema.parse_json_output`, whose
`surrounding_text=True` form these backends use); this adds the seeds, prompts and repair turns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from ..errors import ConfigError
from .schema import check_schema
from .types import LLMRequest

StructuredMode = Literal["json_schema", "json_object", "prompt"]


def derive_seed(seed: int, sample_index: int) -> int:
    """Sample 0 keeps the request's seed; later samples get distinct seeds that do not collide with
    another request's plain seed the way seed + sample_index would (seed 1 vs seed 0 / sample 1)."""
    if sample_index == 0:
        return seed
    digest = hashlib.sha256(f"{seed}/{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def check_schemas(requests: Sequence[LLMRequest]) -> None:
    """Reject an invalid JSON schema before anything is generated, naming the request."""
    for i, request in enumerate(requests):
        if request.json_schema is not None:
            try:
                check_schema(request.json_schema)
            except ConfigError as exc:
                raise ConfigError(f"request {i}: {exc}") from None


def schema_instruction(schema: dict[str, Any]) -> str:
    return (
        "Reply with only a JSON object, no other text, that validates against this JSON schema:\n"
        + json.dumps(schema, ensure_ascii=False)
    )


def structured_prompt(
    messages: list[dict[str, str]], schema: dict[str, Any], mode: StructuredMode
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """(messages, extra create() arguments) asking an OpenAI-compatible server for schema-valid JSON:
    the schema as response_format where the server enforces it, else spelled out in the prompt."""
    if mode == "json_schema":
        name = "".join(c if c.isalnum() or c in "_-" else "_" for c in str(schema.get("title", "response")))
        spec = {"name": name[:64] or "response", "schema": schema, "strict": False}
        return messages, {"response_format": {"type": "json_schema", "json_schema": spec}}
    messages = with_instruction(messages, schema_instruction(schema))
    return messages, ({"response_format": {"type": "json_object"}} if mode == "json_object" else {})


def with_instruction(messages: list[dict[str, str]], instruction: str) -> list[dict[str, str]]:
    """Append the instruction to the last user turn: chat templates such as Mistral's reject a second
    system message, and OpenAI's JSON mode requires the word JSON somewhere in the prompt."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "user":
            updated = {**messages[i], "content": messages[i]["content"] + "\n\n" + instruction}
            return messages[:i] + [updated] + messages[i + 1 :]
    return messages + [{"role": "user", "content": instruction}]


def repair_turns(reply: str, problem: str) -> list[dict[str, str]]:
    """The turns that send a model its invalid reply and what is wrong with it, to try again."""
    fix = f"That reply is invalid: {problem}. Reply again with only the corrected JSON object."
    return [{"role": "assistant", "content": reply}, {"role": "user", "content": fix}]
