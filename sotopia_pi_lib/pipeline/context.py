"""What a stage notebook opens first: the validated config, the run folder, the data, the models.

A notebook's parameters cell holds only literals (run name, params file); everything derived from
them is built here, where tests reach it, and is the same from JupyterLab, papermill or any
working directory. Opening a stage takes the run's lock (or works under the runner's, see
`store.lock`) and notes what the stage is made from; finishing it checks the failure budget and only
then marks it done.
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
from ..store.lock import RunLock, enter_stage
from ..store.manifest import StageRecord, begin_stage, end_stage, file_hashes, init_manifest
from ..store.run import RunPaths, mark_done
from .budget import FailureBudget
from .freshness import stage_inputs
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
    inputs: dict[str, Any] = field(default_factory=dict)
    lock: RunLock | None = None
    failures: FailureBudget | None = None
    _models: dict[str, MeteredLLM] = field(default_factory=dict)
    pool: EnginePool = field(default_factory=EnginePool)  # one engine per base model for the stage

    def __post_init__(self) -> None:
        if self.failures is None:
            self.failures = FailureBudget(self.stage, self.cfg.run.max_failure_fraction)

    def count_units(self, kind: str, total: int, errors: list[str]) -> None:
        """Book `total` units of `kind` (episodes, ratings, ...) of which `errors` failed (one message
        each); `finish` refuses to mark the stage done when a kind is over the failure budget."""
        assert self.failures is not None
        self.failures.add(kind, total, errors)

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
        """Mark the stage done: hashes of its outputs and inputs, LLM usage per role, failures, notes,
        into `_done.json` and the manifest; over the failure budget, record it failed and raise."""
        assert self.failures is not None
        existing = [p for p in outputs if p.exists()]
        self.record.outputs = file_hashes(existing, self.paths.root)
        self.record.inputs = _flat_inputs(self.inputs)
        self.record.llm_usage = {k: m.usage.model_dump() for k, m in self._models.items()}
        self.record.notes = dict(notes or {}) | {"failures": self.failures.summary()}
        for m in self._models.values():
            print(m.usage.line())
        problems = self.failures.problems()
        end_stage(self.paths.root, self.record, "failed" if problems else "done")
        try:
            self.failures.check()
            mark_done(self.paths, self.stage, existing, self.inputs, {"failures": self.failures.summary()})
        finally:  # done or over the budget, this stage writes no more and frees its engines
            self.close_models()
            self.release_lock()
        return self.record

    def release_lock(self) -> None:
        """Let another writer have the run (done by `finish`; a notebook that stops early keeps the
        lock until this is called or its kernel ends)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def _flat_inputs(inputs: dict[str, Any]) -> dict[str, str]:
    """`_done.json`'s inputs as the manifest's flat `name -> hash` mapping."""
    flat = {f"params:{k}": v for k, v in inputs.get("params", {}).items()}
    flat |= {f"upstream:{k}": v or "" for k, v in inputs.get("upstream", {}).items()}
    flat |= {f"library:{k}": v for k, v in inputs.get("library", {}).items()}
    if "notebook" in inputs:
        flat["notebook"] = inputs["notebook"]
    return flat


def open_stage(stage: str, params: str | Path, run: str = "") -> StageContext:
    """Load and validate the params, set up `results/<run>/` and record that the stage started."""
    params_file = resolve_params(params)
    cfg = load_config(params_file)
    if stage != "06_analysis":
        check_machine(cfg, str(params_file))
    paths = RunPaths.for_run(run or cfg.run.name)
    lock = enter_stage(paths.root)  # before anything is written: a second writer stops here
    paths.stage_dir(stage).mkdir(parents=True, exist_ok=True)
    inputs = stage_inputs(cfg, paths, stage)
    init_manifest(paths.root, cfg.model_dump(mode="json"), str(params_file.relative_to(project_root()))
                  if params_file.is_relative_to(project_root()) else str(params_file))
    record = begin_stage(paths.root, stage)
    return StageContext(stage=stage, cfg=cfg, paths=paths, params_file=params_file, record=record,
                        inputs=inputs, lock=lock)
