"""Stage 0: the study's inputs (SOTOPIA profiles and task sets, MMLU, the embedded model)."""

from .embedded_model import embedded_model_dir, ensure_embedded_model
from .fetch import fetch_sotopia_data
from .mmlu import CATEGORIES, SUBJECT_CATEGORY, MMLUQuestion, load_mmlu
from .profiles import (
    AgentProfile,
    EnvAgentCombo,
    EnvironmentProfile,
    InspirationalPrompt,
    RelationshipProfile,
    RelationshipType,
)
from .sotopia import TASK_SETS, SotopiaData, load_sotopia

__all__ = [
    "CATEGORIES",
    "SUBJECT_CATEGORY",
    "TASK_SETS",
    "AgentProfile",
    "EnvAgentCombo",
    "EnvironmentProfile",
    "InspirationalPrompt",
    "MMLUQuestion",
    "RelationshipProfile",
    "RelationshipType",
    "SotopiaData",
    "embedded_model_dir",
    "ensure_embedded_model",
    "fetch_sotopia_data",
    "load_mmlu",
    "load_sotopia",
]
