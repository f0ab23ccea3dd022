"""The study's configuration: one validated object built from a params file, passed down.

Every block maps 1:1 onto a YAML block of `params/<profile>.yaml`; an unknown or misspelt key, a
wrong type or a role without a model is an error that names the key, before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from .errors import ConfigError
from .evaluate.benchmark import EvalModel, EvaluateConfig
from .evaluate.human_eval import HumanEvalConfig
from .evaluate.mmlu import MMLUConfig
from .judge.rate import JudgeConfig
from .llm.types import ModelSpec
from .pi.filtering import FilterConfig
from .pi.generate import GenerationConfig
from .pi.train_config import TrainConfig
from .sim.runner import RunConfig
from .strict import StrictModel

ROLES = ("task_generator", "expert", "policy", "partner", "judge")
Role = Literal["task_generator", "expert", "policy", "partner", "judge"]


class RunSettings(StrictModel):
    """The `run` block: which folder under results/ the study writes, its seed, its failure budget."""

    name: str = Field(description="run folder under results/")
    seed: int = 0
    max_failure_fraction: float = Field(
        0.02, ge=0.0, le=1.0,
        description="a stage with a larger share of failed units (episodes, ratings, tasks, MMLU answers) "
                    "of any kind fails and is not marked done")


class SimulationConfig(RunConfig):
    """How episodes are played (sim.runner.RunConfig) and which role's model reformats an agent output
    that holds no valid action (the paper: GPT-3.5, its partner)."""

    reformat_role: Role = "partner"


class RoleModels(StrictModel):
    """Which model plays each role of the study (DESIGN.md, 'Model roles and backends')."""

    task_generator: ModelSpec
    expert: ModelSpec
    policy: ModelSpec
    partner: ModelSpec
    judge: ModelSpec


class CollectConfig(StrictModel):
    """Which self-play data to collect and train on (section 3.2 and 4 of the paper)."""

    sources: tuple[Literal["bc", "sr"], ...] = ("bc", "sr")
    bc_sr: bool = Field(True, description="also run BC+SR: BC model self-play, filtered, trained from BC")


class MMLUStudyConfig(MMLUConfig):
    """MMLU for the policy models (the expert is an API model in the paper and is not checked)."""

    models: tuple[EvalModel, ...] = ("base", "sr", "bc", "bc_sr")
    backend: Literal["policy", "hf"] = Field(
        "policy", description="policy: the policy's own backend; hf: its weights and adapters through "
        "transformers, as SOTOPIA-pi's evaluation scores them (needed for plain prompts on vllm)")


class StudyConfig(StrictModel):
    run: RunSettings
    models: RoleModels
    generate: GenerationConfig
    simulation: SimulationConfig = SimulationConfig()
    judge: JudgeConfig = JudgeConfig()
    collect: CollectConfig = CollectConfig()
    filter: FilterConfig = FilterConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    mmlu: MMLUStudyConfig = MMLUStudyConfig()
    human_eval: HumanEvalConfig = HumanEvalConfig()

    @model_validator(mode="after")
    def _models_have_data(self) -> StudyConfig:
        """A model can only be evaluated if the params collect the data that trains it."""
        made = {"base", "expert"} | set(self.collect.sources) | ({"bc_sr"} if self.collect.bc_sr else set())
        if self.collect.bc_sr and "bc" not in self.collect.sources:
            raise ValueError("collect.bc_sr needs 'bc' in collect.sources (BC+SR continues from BC)")
        for block, names in (("evaluate.models", self.evaluate.models), ("mmlu.models", self.mmlu.models)):
            missing = [m for m in names if m not in made]
            if missing:
                raise ValueError(f"{block}: {missing} not trained with these collect settings")
        return self


def _key_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(whole file)"


def parse_config(raw: dict, source: str = "<params>") -> StudyConfig:
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = _key_path(err["loc"])
            if err["type"] == "extra_forbidden":
                lines.append(f"  {key}: unknown key (misspelt?)")
            elif err["type"] == "missing":
                lines.append(f"  {key}: missing")
            else:
                lines.append(f"  {key}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError(f"{source}: invalid params:\n" + "\n".join(lines)) from None


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a params YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of blocks (run, models, ...)")
    return parse_config(raw, str(path))
