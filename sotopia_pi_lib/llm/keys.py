"""Names for models in episode records and ids."""

from __future__ import annotations

from .base import LLM
from .cache import model_hash


def model_key(name: str, llm: LLM) -> str:
    """`name@<hash of what the model is>` (weights, adapter content, output-relevant options).

    Episode ids derive from it, so a retrained adapter or a changed model never resumes into an
    episode file written by its predecessor. identity() hashes files without loading weights.
    """
    return f"{name}@{model_hash(llm.identity())[:10]}"
