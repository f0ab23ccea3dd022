"""The training recipe as one validated object (the `train` block of a params file).

Defaults are for a small CPU run of the embedded model. The paper's recipe (QLoRA 4-bit NF4 with
double quantization, LoRA r=8, alpha=32, dropout 0.1 on q_proj/v_proj, lr 5e-5 cosine with 3% warm-up,
max length 4096, batch 4; reference/sotopia_pi_reference.json, `training_recipe`) lives in
params/paper.yaml, not here.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..strict import StrictModel


class LoraParams(StrictModel):
    r: int = Field(8, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")


class TrainConfig(StrictModel):
    # How often state is saved, never what is learnt: left out of the training run's key.
    EXECUTION_ONLY: ClassVar[frozenset[str]] = frozenset({"save_steps", "save_total_limit"})

    base_model: str = Field("embedded", description="'embedded', a local HF folder or a hub id")
    init_adapter: str | None = Field(
        None, description="adapter folder to continue training (BC+SR); checked at train time"
    )
    qlora: bool = Field(False, description="load the base in 4-bit NF4 with double quantization")
    lora: LoraParams = LoraParams()
    lr: float = Field(2e-4, gt=0.0)
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs when set")
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(2048, ge=16, description="tokens of prompt + completion")
    overlong: Literal["drop", "truncate_left"] = Field(
        "drop", description="an example over max_length is dropped, or loses its oldest prompt tokens"
    )
    precision: Literal["fp32", "bf16"] = "fp32"
    gradient_checkpointing: bool = False
    seed: int = 0
    save_steps: int = Field(50, ge=1)
    save_total_limit: int | None = Field(2, ge=1)
    logging_steps: int = Field(1, ge=1)

    @property
    def examples_per_step(self) -> int:
        return self.batch_size * self.grad_accum
