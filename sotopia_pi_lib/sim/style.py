"""Which prompt style episodes are played in, and how records name it.

`project`: the project's versioned prompts and batched runner. `sotopia`: the official `sotopia`
package's agents, environment and evaluator (sim/official.py). A record's prompt_version says which:
the project's prompt version, or `sotopia==<version>` (`+json` with constrained decoding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from ..official.runtime import SOTOPIA_VERSION

if TYPE_CHECKING:
    from .runner import RunConfig

class SotopiaStyle(BaseModel):
    """Settings of the sotopia prompt style (`prompts: sotopia`; see docs/official_style.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    json_schema: bool = Field(
        False,
        description="departure from the paper: decode actions and ratings under the package's own output "
        "models' JSON schemas (for models too small to write the JSON unaided); the prompts are unchanged",
    )


OFFICIAL_STYLE = f"sotopia=={SOTOPIA_VERSION}"
CONSTRAINED = "+json"


def style_version(config: RunConfig) -> str:
    """What the episodes' prompts are: the project's prompt version, or the package and its version
    (`+json` when decoding is constrained); recorded as each episode's prompt_version."""
    if config.prompts == "project":
        return config.prompt_version
    return OFFICIAL_STYLE + (CONSTRAINED if config.sotopia.json_schema else "")


def is_official_style(prompt_version: str) -> bool:
    """Whether a record was played in the sotopia style (by any version of the package)."""
    return prompt_version.startswith("sotopia==")


def is_constrained_style(prompt_version: str) -> bool:
    """Whether a sotopia-style record was decoded under the package's JSON schemas (`json_schema`)."""
    return is_official_style(prompt_version) and prompt_version.endswith(CONSTRAINED)
