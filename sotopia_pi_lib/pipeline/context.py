"""What a stage notebook opens first: the validated config, the run folder, the data, the models.

A notebook's parameters cell holds only literals (run name, params file); everything derived from
them is built here, where tests reach it, and is the same from JupyterLab, papermill or any
working directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import StudyConfig, load_config
from ..data.sotopia import SotopiaData, load_sotopia
from ..errors import ConfigError
from ..llm.pool import EnginePool
from ..llm.registry import LOCAL_BACKENDS, build_llm
from ..llm.types import ModelSpec
from ..llm.usage import MeteredLLM
from ..paths import project_root
from ..store.manifest import StageRecord, begin_stage, end_stage, file_hashes, init_manifest
from ..store.run import RunPaths, mark_done
from .preflight import check_machine


def resolve_params(params: str | Path) -> Path:
    """A params path as given, else relative to the project root (notebooks run from notebooks/)."""
    p = Path(params)
    if p.is_absolute() or p.exists():
        return p.resolve()
    return project_root() / p


@dataclass
class StageContext:
    stage: str
    cfg: StudyConfig
    paths: RunPaths
    params_file: Path
    record: StageRecord
    _models: dict[str, MeteredLLM] = field(default_factory=dict)
    pool: EnginePool = field(default_factory=EnginePool)  # one engine per base model for the stage

    @cached_property
    def data(self) -> SotopiaData:
        return load_sotopia()

    def model(self, role: str, spec: ModelSpec | None = None, label: str | None = None) -> MeteredLLM:
        """The model of a role (or an explicit spec, e.g. the policy with an adapter), built once,
        cached by content and metered under `label` (default: the role). Models of one base model
        (the policy and its adapters; in the embedded profiles every role) share one engine, which
        loads on the first request the cache cannot answer."""
        key = label or role
        if key not in self._models:
            if spec is None:
                if not hasattr(self.cfg.models, role):
                    raise ConfigError(f"unknown role {role!r}")
                spec = getattr(self.cfg.models, role)
            self._models[key] = MeteredLLM(build_llm(spec, pool=self.pool), key)
        return self._models[key]

    def release(self, *labels: str) -> None:
        """The stage needs these local models no more: an engine is closed when no open model uses it
        (asking a released model again reopens it). API clients stay open until `finish`. Their
        usage stays for the manifest."""
        for label in labels:
            if label in self._models and self._models[label].spec.backend in LOCAL_BACKENDS:
                self._models[label].close()

    def close_models(self) -> None:
        for m in self._models.values():
            m.close()
        self.pool.close()

    def usage(self) -> pd.DataFrame:
        rows = [m.usage.model_dump() | {"tokens": m.usage.tokens} for m in self._models.values()]
        return pd.DataFrame(rows)

    def finish(self, outputs: list[Path], notes: dict[str, Any] | None = None) -> StageRecord:
        """Mark the stage done: hashes of its outputs, LLM usage per role, notes, into the manifest."""
        existing = [p for p in outputs if p.exists()]
        self.record.outputs = file_hashes(existing, self.paths.root)
        self.record.llm_usage = {k: m.usage.model_dump() for k, m in self._models.items()}
        self.record.notes = dict(notes or {})
        end_stage(self.paths.root, self.record)
        mark_done(self.paths, self.stage, existing)
        for m in self._models.values():
            print(m.usage.line())
        self.close_models()
        return self.record


def open_stage(stage: str, params: str | Path, run: str = "") -> StageContext:
    """Load and validate the params, set up `results/<run>/` and record that the stage started."""
    params_file = resolve_params(params)
    cfg = load_config(params_file)
    if stage != "06_analysis":
        check_machine(cfg, str(params_file))
    paths = RunPaths.for_run(run or cfg.run.name)
    paths.stage_dir(stage).mkdir(parents=True, exist_ok=True)
    init_manifest(paths.root, cfg.model_dump(mode="json"), str(params_file.relative_to(project_root()))
                  if params_file.is_relative_to(project_root()) else str(params_file))
    record = begin_stage(paths.root, stage)
    return StageContext(stage=stage, cfg=cfg, paths=paths, params_file=params_file, record=record)
