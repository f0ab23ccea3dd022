"""LLM backends behind one interface (see base.LLM), with a persistent response cache."""

from .base import LLM
from .types import BACKENDS, LLMRequest, LLMResponse, Message, ModelSpec, SamplingParams

__all__ = ["BACKENDS", "LLM", "LLMRequest", "LLMResponse", "Message", "ModelSpec", "SamplingParams"]
