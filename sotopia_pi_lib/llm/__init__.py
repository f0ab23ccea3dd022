"""LLM backends behind one interface (see base.LLM), with a persistent response cache.

`build_llm(spec)` is the way in: it imports only the selected backend (so this package never imports
torch, transformers, openai or vllm by itself) and puts it behind the response cache.
"""

from .base import LLM
from .cache import CacheStats, ResponseCache
from .registry import CachedLLM, build_llm
from .schema import check_schema
from .types import BACKENDS, LLMRequest, LLMResponse, Message, ModelSpec, SamplingParams

__all__ = [
    "BACKENDS",
    "LLM",
    "CacheStats",
    "CachedLLM",
    "LLMRequest",
    "LLMResponse",
    "Message",
    "ModelSpec",
    "ResponseCache",
    "SamplingParams",
    "build_llm",
    "check_schema",
]
