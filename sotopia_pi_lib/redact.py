"""Secrets out of everything the library writes: the manifest, error messages, failure records, logs.

Keys are read from the environment and never belong in params, yet they leak in other ways: an HTTP
error echoes a URL with a password in it, a 401 body echoes part of a key, a user pastes a token into a
base URL or a note. So every text that leaves a process through the library (a stored failure, a stage
error, the manifest) passes `scrub_text`, and every mapping passes `scrub`.

What counts as a secret: the value of any environment variable named by a model's `api_key_env`
(registered when the backend reads it), the value of any variable whose name says key, token, secret or
password, and anything shaped like one (`sk-…` and `hf_…` tokens, `user:password@` in a URL, a
`?api_key=`/`?token=` query parameter, a `Bearer` credential).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MASK = "***"
REDACTED = "<redacted>"
MIN_SECRET_LEN = 8  # shorter env values ("0", "true") are too common to mask in arbitrary text
SECRET_ENV_NAME = re.compile(r"API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
NOT_SECRET_ENV_NAME = re.compile(r"_(PATH|FILE|DIR|ENV)$|PARALLELISM", re.IGNORECASE)
SECRET_FIELD = re.compile(r"(^|[_-])(api[_-]?key|apikey|secret|password|passwd|authorization|bearer|token|"
                          r"credentials?)$", re.IGNORECASE)  # `token`, `hf_token`, not `max_tokens`
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), "sk-" + MASK),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), "hf_" + MASK),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + MASK + "@"),
    (re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|auth|password|secret|sig)=)[^&\s#'\"]+"),
     r"\1" + MASK),
)
_registered: set[str] = set()


def register_secret_env(name: str) -> None:
    """Treat the value of environment variable `name` as a secret from now on (api_key_env names)."""
    _registered.add(name)


def register_from_params(params: Any) -> None:
    """Register every `api_key_env` named anywhere in a params mapping."""
    if isinstance(params, dict):
        for key, value in params.items():
            if key == "api_key_env" and isinstance(value, str):
                register_secret_env(value)
            else:
                register_from_params(value)
    elif isinstance(params, list | tuple):
        for value in params:
            register_from_params(value)


def is_secret_env(name: str) -> bool:
    return name in _registered or (bool(SECRET_ENV_NAME.search(name)) and not NOT_SECRET_ENV_NAME.search(name))


def secret_values(extra: Iterable[str] = ()) -> list[str]:
    """Current secret values, longest first (so a key is masked whole before any part of it)."""
    values = {v for k, v in os.environ.items() if is_secret_env(k) and len(v) >= MIN_SECRET_LEN}
    values |= {v for v in extra if len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def scrub_text(text: str, extra: Iterable[str] = ()) -> str:
    """`text` with every secret value and every secret-shaped substring masked."""
    for value in secret_values(extra):
        text = text.replace(value, MASK)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def is_secret_field(name: str) -> bool:
    """A mapping key whose value is a secret (`api_key`, `password`, ...), not one naming where a
    secret lives (`api_key_env`)."""
    return bool(SECRET_FIELD.search(name))


def scrub(obj: Any) -> Any:
    """A copy of a JSON-like value with secret-named fields replaced and every string scrubbed."""
    if isinstance(obj, dict):
        return {k: REDACTED if is_secret_field(str(k)) else scrub(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub(v) for v in obj]
    if isinstance(obj, Path):
        obj = str(obj)
    if isinstance(obj, str):
        return scrub_text(obj)
    return obj
