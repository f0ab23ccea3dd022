"""Load the base model (full precision or 4-bit NF4) and put a trainable LoRA adapter on it."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError
from .train_config import TrainConfig


def resolve_base_model(name: str) -> str:
    """'embedded' -> the embedded model folder; anything else is a local folder or a hub id."""
    if name == "embedded":
        from ..data import ensure_embedded_model

        return str(ensure_embedded_model())
    return name


def load_tokenizer(base_path: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"train.base_model: cannot load a tokenizer from {base_path!r}: {e}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(config: TrainConfig, base_path: str):
    from transformers import AutoModelForCausalLM

    from ..llm.hf_load import nf4_config, plain_config

    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float32
    kwargs: dict = {"config": plain_config(base_path), "dtype": dtype}
    if config.qlora:
        kwargs["quantization_config"] = nf4_config(dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
    except (OSError, ValueError) as e:
        raise ConfigError(f"train.base_model: cannot load {base_path!r}: {e}") from None
    if config.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    return model


def load_model(config: TrainConfig, base_path: str):
    """The base with a trainable adapter: a new LoRA, or `init_adapter` to continue (BC -> BC+SR)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    model = load_base(config, base_path)
    if config.init_adapter:
        return PeftModel.from_pretrained(model, str(Path(config.init_adapter)), is_trainable=True)
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)
