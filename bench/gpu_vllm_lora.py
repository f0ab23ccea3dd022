"""The vllm backend's adapter machinery on a GPU: one engine, two LoRA adapters, one batch.

The embedded model's architecture (its config and tokenizer) with random weights (vLLM's
`load_format: dummy`) and two random LoRA adapters on q_proj and v_proj: three variants (the base
and one per adapter) built through one EnginePool must build ONE vllm.LLM, with enable_lora and
max_loras 2; a batch mixing both adapters and the base is served in one vLLM call, and every
schema-constrained reply parses. Checks the plumbing, not the model (random weights say nothing).
Part of bench/gpu_check.sh; without a CUDA GPU or without vLLM it says so and exits 0.

    python bench/gpu_vllm_lora.py
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

SCHEMA = {  # enums only: random weights cannot run it past max_tokens, so every reply must parse
    "type": "object",
    "properties": {
        "action_type": {"enum": ["none", "speak", "non-verbal communication", "action", "leave"]},
        "tone": {"enum": ["warm", "neutral", "cold"]},
    },
    "required": ["action_type", "tone"],
}


def skip_reason() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install -e '.[gpu]')"
    return None


def model_folder(tmp: Path) -> Path:
    """The embedded model's config and tokenizer, no weights (vLLM makes random ones)."""
    from sotopia_pi_lib.data import ensure_embedded_model

    source, folder = ensure_embedded_model(), tmp / "dummy"
    folder.mkdir()
    for f in source.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, folder / f.name)
    return folder


def random_adapter(config_dir: Path, folder: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    net = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir))
    lora = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(net, lora).save_pretrained(folder)
    return folder


def main() -> int:
    reason = skip_reason()
    if reason:
        print(f"vllm LoRA check skipped: {reason}")
        return 0
    from sotopia_pi_lib.llm import LLMRequest, Message, ModelSpec, SamplingParams
    from sotopia_pi_lib.llm.pool import EnginePool
    from sotopia_pi_lib.llm.registry import build_llm

    with tempfile.TemporaryDirectory() as tmp:
        folder = model_folder(Path(tmp))
        adapters = [random_adapter(folder, Path(tmp) / f"lora{k}", k) for k in (1, 2)]
        options = {"load_format": "dummy", "dtype": "bfloat16", "gpu_memory_utilization": 0.3,
                   "max_model_len": 2048, "enforce_eager": True}  # fmt: skip
        spec = ModelSpec(backend="vllm", model=str(folder), options=options)
        pool = EnginePool()
        variants = [build_llm(spec.model_copy(update={"adapter": a and str(a)}), cache=None, pool=pool)
                    for a in (None, *adapters)]  # fmt: skip
        base = variants[0].inner.base  # type: ignore[attr-defined]
        assert base.builds == 0, "the engine was built before any request"
        requests = [
            LLMRequest(messages=(Message(role="system", content=f"You are agent {i}."),
                                 Message(role="user", content="What do you do next?")),
                       json_schema=SCHEMA, sampling=SamplingParams(temperature=1.0, max_tokens=64), seed=i)
            for i in range(6)
        ]  # fmt: skip
        loras = [variants[i % 3].inner._lora for i in range(6)]  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        out = base.generate(requests, loras)  # base, adapter 1, adapter 2, ... in ONE vLLM batch
        seconds = time.perf_counter() - t0
        bad = [r.error for r in out if not r.ok or r.parsed is None]
        per_variant = [v.generate(requests[:2]) for v in variants]  # each variant on its own too
        kwargs = base.engine_kwargs()
        print(f"vllm engines built: {base.builds}; enable_lora={kwargs.get('enable_lora')} "
              f"max_loras={kwargs.get('max_loras')} max_lora_rank={kwargs.get('max_lora_rank')}")
        print(f"one mixed batch of {len(out)} (base + 2 adapters): {len(out) - len(bad)} parsed, {seconds:.1f} s")
        ok = (base.builds == 1 and not bad and kwargs.get("max_loras") == 2
              and all(r.ok for rs in per_variant for r in rs))  # fmt: skip
        for v in variants:
            v.close()
        print("vllm LoRA check:", "PASSED" if ok else f"FAILED {bad}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
