"""Can this machine run these params? Checked before any stage starts, so a run that needs an API key
or a GPU it does not have fails in a second with every missing piece listed, not an hour in.

Only cheap checks: environment variables, whether a package is installed (without importing it) and
whether torch sees a GPU. A wrong key or an unreachable server still shows up at the first call.
"""

from __future__ import annotations

import importlib.util

from ..config import ROLES, StudyConfig
from ..errors import ConfigError, SotopiaPiError
from ..llm.types import ModelSpec


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def spec_problems(role: str, spec: ModelSpec, cuda: bool | None = None) -> list[str]:
    """What is missing on this machine for one role's model (empty when nothing is)."""
    where = f"models.{role} ({spec.label})"
    if spec.backend == "openai":
        from ..llm.openai_backend import parse_options, resolve_api_key

        try:
            resolve_api_key(spec, parse_options(spec))
        except SotopiaPiError as e:
            return [f"{where}: {e}"]
        return []
    needs_gpu = spec.backend == "vllm" or spec.options.get("device") == "cuda"
    if needs_gpu and cuda is None:  # importing torch costs seconds: only when a spec needs a GPU
        cuda = _cuda_available()
    if spec.backend == "vllm":
        problems = []
        if importlib.util.find_spec("vllm") is None:
            problems.append(f"{where}: the vllm backend needs the `vllm` package (pip install -e '.[gpu]')")
        if not cuda:
            problems.append(f"{where}: the vllm backend needs a CUDA GPU and torch sees none "
                            "(use backend: hf to run this role on the CPU)")
        return problems
    if spec.backend == "hf":
        if spec.options.get("device") == "cuda" and not cuda:
            return [f"{where}: options.device is cuda but torch sees no CUDA GPU (use device: auto or cpu)"]
        if spec.options.get("load_in_4bit") and importlib.util.find_spec("bitsandbytes") is None:
            return [f"{where}: options.load_in_4bit needs the `bitsandbytes` package"]
    return []


def check_machine(cfg: StudyConfig, source: str = "params", cuda: bool | None = None) -> None:
    """Raise one ConfigError listing every role this machine cannot run."""
    problems = [p for role in ROLES for p in spec_problems(role, getattr(cfg.models, role), cuda)]
    if cfg.train.qlora and importlib.util.find_spec("bitsandbytes") is None:
        problems.append("train.qlora: QLoRA needs the `bitsandbytes` package")
    if problems:
        raise ConfigError(f"{source}: this machine cannot run these params:\n"
                          + "\n".join(f"  {p}" for p in problems))
