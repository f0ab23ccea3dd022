"""What a training run leaves beside its adapter: the loss curve and a provenance record.

The provenance answers "what is this adapter?" without the notebook that made it: which base (and its
config hash), which adapter it continued from, which data (sha256), which recipe, how the loss went and
with which library versions. BC+SR adapters carry their BC parent's provenance inside their own.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import time
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel

from ..store.files import atomic_write_text, sha256_file
from .sft_encode import EncodeStats
from .train_config import TrainConfig
from .train_model import resolve_base_model

PROVENANCE = "provenance.json"
LOSS_JSON = "loss_curve.json"
LOSS_CSV = "loss_curve.csv"
LIBRARIES = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets")


class LossPoint(BaseModel):
    step: int
    epoch: float | None = None
    loss: float
    learning_rate: float | None = None
    grad_norm: float | None = None
    num_tokens: float | None = None
    mean_token_accuracy: float | None = None


def loss_points(log_history: list[dict]) -> list[LossPoint]:
    """The training-loss entries of a Trainer's log history (restored across resumes)."""
    fields = LossPoint.model_fields
    return [LossPoint(**{k: v for k, v in e.items() if k in fields}) for e in log_history if "loss" in e]


def write_loss_curve(output_dir: Path, losses: list[LossPoint]) -> None:
    rows = [p.model_dump() for p in losses]
    atomic_write_text(output_dir / LOSS_JSON, json.dumps(rows, indent=1))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(LossPoint.model_fields))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(output_dir / LOSS_CSV, buf.getvalue())


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def base_model_identity(spec: str) -> dict:
    """Enough to tell two bases apart without hashing gigabytes: path, config hash, build marker, revision."""
    path = Path(resolve_base_model(spec))
    identity: dict = {"spec": spec, "path": str(path)}
    if (path / "config.json").is_file():
        identity["config_sha256"] = sha256_file(path / "config.json")
        identity["name_or_path"] = json.loads((path / "config.json").read_text()).get("_model_name_or_path")
    marker = path / "sotopia_pi_complete.json"  # written by data.embedded_model with the wheel's hash
    if marker.is_file():
        identity["embedded_build"] = json.loads(marker.read_text())
    return identity


def _init_adapter_record(init_adapter: str | None) -> dict | None:
    if init_adapter is None:
        return None
    folder = Path(init_adapter)
    weights = folder / "adapter_model.safetensors"
    parent = folder / PROVENANCE
    return {
        "path": str(folder),
        "sha256": sha256_file(weights) if weights.is_file() else None,
        "provenance": json.loads(parent.read_text()) if parent.is_file() else None,
    }


def write_provenance(
    adapter_dir: Path,
    config: TrainConfig,
    train_file: Path,
    train_sha256: str,
    stats: EncodeStats,
    losses: list[LossPoint],
    train_time_s: float,
    steps: int,
    tokens: int,
) -> Path:
    record = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "base_model": base_model_identity(config.base_model),
        "init_adapter": _init_adapter_record(config.init_adapter),
        "train_file": {"path": str(train_file), "sha256": train_sha256, **stats.model_dump()},
        "config": config.model_dump(mode="json"),
        "steps": steps,
        "tokens": tokens,
        "train_time_s": round(train_time_s, 3),
        "losses": [p.model_dump(exclude_none=True) for p in losses],
        "adapter_sha256": sha256_file(adapter_dir / "adapter_model.safetensors"),
        "versions": library_versions(),
    }
    return atomic_write_text(adapter_dir / PROVENANCE, json.dumps(record, indent=1))
