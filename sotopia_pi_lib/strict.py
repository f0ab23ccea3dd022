"""The base of the study's file-boundary config blocks: unknown keys are errors, values are frozen.

A misspelt key in a params file must fail with its name rather than be dropped in silence, and a
config object passed down the pipeline must not change under the stages that were keyed by it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Forbids extra keys and is frozen (hashable, safe to key work by)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
