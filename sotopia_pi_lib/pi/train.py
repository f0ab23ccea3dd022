"""Policy update: fine-tune a LoRA (or QLoRA) adapter on a training file with TRL's SFTTrainer.

Layout of `output_dir` (the only thing a later stage reads):
  checkpoints/checkpoint-N/   resumable state every `save_steps` (adapter, optimizer, scheduler, RNG)
  adapter/                    the final adapter, standard peft layout (adapter_model.safetensors +
                              adapter_config.json) so the `hf` backend and `vllm serve --lora-modules`
                              load it, plus provenance.json (base, init adapter, data hash, config, losses)
  loss_curve.json, .csv       the loss per logging step
Calling train_adapter again on the same folder resumes from the last checkpoint; a run that stopped
before its last step writes no adapter/, so a half-trained adapter is never mistaken for a finished one.

Beyond one GPU, a script calling train_adapter runs unchanged under `accelerate launch` (data-parallel,
DeepSpeed): the Trainer shards the batches and only the main process writes the records. The tested path
is the single process.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel
from transformers import TrainerCallback, set_seed
from transformers.trainer_utils import get_last_checkpoint

from ..errors import ConfigError
from ..store.files import atomic_write_text, sha256_file
from .sft_data import read_examples
from .sft_encode import EncodeStats, encode_examples
from .train_config import TrainConfig
from .train_model import load_model, load_tokenizer, resolve_base_model
from .train_record import LossPoint, loss_points, write_loss_curve, write_provenance

CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
FINGERPRINT = "run_fingerprint.json"

if TYPE_CHECKING:
    from trl import SFTTrainer


class TrainResult(BaseModel):
    output_dir: Path
    adapter_dir: Path | None = None
    completed: bool
    resumed_from: str | None = None
    global_step: int
    max_steps: int
    losses: list[LossPoint]
    tokens: int
    examples: EncodeStats
    train_time_s: float
    step_times_s: list[float]
    step_tokens: list[int]


class StepTimer(TrainerCallback):
    """Wall time and (non-padding) tokens of each optimizer step run in this process.

    A step's time runs from the end of the previous step, so it includes fetching and collating the
    batch, logging and every callback: everything the training path adds to the bare computation.
    """

    def __init__(self) -> None:
        self.times: list[float] = []
        self.tokens: list[int] = []
        self._t = 0.0
        self._seen = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t, self._seen = time.perf_counter(), state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.times.append(now - self._t)
        self.tokens.append(state.num_input_tokens_seen - self._seen)
        self._t, self._seen = now, state.num_input_tokens_seen


@dataclass
class PreparedTraining:
    trainer: SFTTrainer
    stats: EncodeStats
    train_sha256: str
    resume_from: str | None
    timer: StepTimer


def _trainer_class():
    from transformers import Trainer
    from trl import SFTTrainer

    class PolicyTrainer(SFTTrainer):
        """SFTTrainer whose loss, off CUDA/XPU, is the model's own cross-entropy over the same labels.

        TRL's fused LM head scores only the completion tokens with a Triton kernel on CUDA/XPU, a gain
        there; elsewhere it projects every position over the whole vocabulary in tiles and adds entropy
        and accuracy metrics, which measured ~20% slower per step on the CPU than the plain loss.
        """

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.accelerator.device.type in ("cuda", "xpu"):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs["use_cache"] = False
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return PolicyTrainer


def _sft_args(config: TrainConfig, checkpoint_dir: Path):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(checkpoint_dir),
        learning_rate=config.lr,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        max_length=config.max_length,
        bf16=config.precision == "bf16",
        activation_checkpointing=config.gradient_checkpointing,
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def _check_fingerprint(checkpoint_dir: Path, fingerprint: dict) -> str | None:
    """The checkpoint to resume from, refusing checkpoints left by a different run in the same folder."""
    path = checkpoint_dir / FINGERPRINT
    last = get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
    if last and path.is_file() and json.loads(path.read_text()) != fingerprint:
        raise ConfigError(
            f"{checkpoint_dir} holds checkpoints of another training file or config; "
            "use a new output folder or delete that one to start over"
        )
    atomic_write_text(path, json.dumps(fingerprint, indent=1, sort_keys=True))
    return last


def prepare_training(
    config: TrainConfig,
    train_file: str | Path,
    output_dir: str | Path,
    callbacks: tuple[TrainerCallback, ...] = (),
) -> PreparedTraining:
    """Validate and encode the data (before any model loads), then build the model and the trainer."""
    from datasets import Dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    examples = read_examples(train_file)
    if config.init_adapter and not (Path(config.init_adapter) / "adapter_config.json").is_file():
        raise ConfigError(
            f"train.init_adapter: {config.init_adapter} is not an adapter folder "
            "(no adapter_config.json); train the previous round first"
        )
    base_path = resolve_base_model(config.base_model)
    tokenizer = load_tokenizer(base_path)
    rows, stats = encode_examples(examples, tokenizer, config.max_length, config.overlong, str(train_file))
    train_sha256 = sha256_file(train_file)
    checkpoint_dir = Path(output_dir) / CHECKPOINTS
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    resume_from = _check_fingerprint(
        checkpoint_dir, {"train_sha256": train_sha256, "config": config.model_dump(mode="json")}
    )
    set_seed(config.seed)  # the new LoRA's initial weights come from the global RNG
    model = load_model(config, base_path)
    dataset = Dataset.from_dict(
        {"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]}
    )
    timer = StepTimer()
    trainer = _trainer_class()(
        model=model,
        args=_sft_args(config, checkpoint_dir),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[timer, *callbacks],
        data_collator=DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id),
    )
    return PreparedTraining(trainer, stats, train_sha256, resume_from, timer)


def train_adapter(
    config: TrainConfig,
    train_file: str | Path,
    output_dir: str | Path,
    callbacks: tuple[TrainerCallback, ...] = (),
) -> TrainResult:
    """Train (or resume training) an adapter on `train_file`; see the module docstring for outputs."""
    output_dir = Path(output_dir)
    prep = prepare_training(config, train_file, output_dir, callbacks)
    trainer = prep.trainer
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=prep.resume_from)
    train_time = time.perf_counter() - t0
    state = trainer.state
    losses = loss_points(state.log_history)
    completed = state.global_step >= state.max_steps
    adapter_dir = output_dir / ADAPTER if completed else None
    if adapter_dir is not None:
        _save_adapter(trainer, adapter_dir)
    if trainer.is_world_process_zero():  # under `accelerate launch`, one process writes the records
        write_loss_curve(output_dir, losses)
        if adapter_dir is not None:
            write_provenance(
                adapter_dir,
                config,
                Path(train_file),
                prep.train_sha256,
                prep.stats,
                losses,
                train_time,
                state.global_step,
                state.num_input_tokens_seen,
            )
    return TrainResult(
        output_dir=output_dir,
        adapter_dir=adapter_dir,
        completed=completed,
        resumed_from=prep.resume_from,
        global_step=state.global_step,
        max_steps=state.max_steps,
        losses=losses,
        tokens=state.num_input_tokens_seen,
        examples=prep.stats,
        train_time_s=train_time,
        step_times_s=prep.timer.times,
        step_tokens=prep.timer.tokens,
    )


def _save_adapter(trainer, adapter_dir: Path) -> None:
    """Save into a sibling folder and swap it in, so adapter/ is always a complete adapter.

    `Trainer.save_model` rather than `save_pretrained`: every process must call it, so that DeepSpeed
    ZeRO-3 can gather the sharded weights; it also writes the tokenizer beside the adapter.
    """
    partial = adapter_dir.with_name(adapter_dir.name + ".partial")
    main = trainer.is_world_process_zero()
    if main:
        shutil.rmtree(partial, ignore_errors=True)
    trainer.save_model(str(partial))
    if main:
        (partial / "training_args.bin").unlink(missing_ok=True)  # a pickle, and a copy of provenance.config
        if adapter_dir.exists():
            shutil.rmtree(adapter_dir)
        partial.rename(adapter_dir)
    trainer.accelerator.wait_for_everyone()
