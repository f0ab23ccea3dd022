"""Policy update: fine-tune a LoRA (or QLoRA) adapter on a training file with TRL's SFTTrainer.

Layout of `output_dir` (the only thing a later stage reads):
  checkpoints/<key>/checkpoint-N/  resumable state every `save_steps` (adapter, optimizer, scheduler, RNG);
                              <key> hashes everything that shapes the run (training file, recipe, base
                              weights, the adapter it continues), so other settings never resume it
  adapter -> adapter-<sha>/   the final adapter, standard peft layout (adapter_model.safetensors +
                              adapter_config.json) so the `hf` backend and `vllm serve --lora-modules`
                              load it, plus provenance.json (base, init adapter, data hash, config, losses)
  loss_curve.json, .csv       the loss per logging step
Calling train_adapter again on the same folder resumes from the last *complete* checkpoint (one whose
save finished: a kill during a save leaves a folder without the completion marker, which is removed).
A run that stopped before its last step writes no adapter, so a half-trained adapter is never mistaken
for a finished one; the final adapter is written beside and then appears at once: `adapter` is a link
swapped atomically to the new folder, so there is never a moment with no (or half an) adapter.

Beyond one GPU, a script calling train_adapter runs unchanged under `accelerate launch` (data-parallel,
DeepSpeed): the Trainer shards the batches and only the main process writes the records. The tested path
is the single process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel
from transformers import TrainerCallback, TrainerState, set_seed

from ..errors import ConfigError
from ..llm.fingerprint import adapter_hash, hub_weights_hash, is_local_model, tokenizer_hash, weights_hash
from ..store.files import atomic_write_text, sha256_file
from ..store.keys import content_hash, result_fields
from .sft_data import read_examples
from .sft_encode import EncodeStats, encode_examples
from .train_config import TrainConfig
from .train_model import load_model, load_tokenizer, resolve_base_model
from .train_record import LossPoint, loss_points, write_loss_curve, write_provenance

CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
FINGERPRINT = "run_fingerprint.json"
COMPLETE = "checkpoint_complete.json"  # written after a checkpoint's save returned: its files are whole
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

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
        and accuracy metrics, which make a step on the CPU slower than the plain loss does.
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


class MarkComplete(TrainerCallback):
    """Marks each checkpoint complete once the Trainer has finished saving it (model, optimizer,
    scheduler, RNG, trainer state): a folder without the mark was cut short and is never resumed."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            atomic_write_text(folder / COMPLETE, json.dumps({"step": state.global_step}))


def last_complete_checkpoint(run_dir: Path) -> str | None:
    """The newest checkpoint whose save completed; incomplete ones (a kill mid-save) are deleted so the
    Trainer's own rotation never keeps one of them over a good one."""
    if not run_dir.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in run_dir.iterdir()
                    if p.is_dir() and (m := _CHECKPOINT.match(p.name))), reverse=True)
    complete = None
    for _, folder in found:
        if not (folder / COMPLETE).is_file():
            shutil.rmtree(folder, ignore_errors=True)
        elif complete is None:
            complete = str(folder)
    return complete


def base_identity(base_model: str) -> dict[str, str | None]:
    """The base model by content (weights and tokenizer hashes), not by path."""
    path = resolve_base_model(base_model)
    if is_local_model(path):
        return {"weights": weights_hash(Path(path)), "tokenizer": tokenizer_hash(Path(path))}
    weights, revision = hub_weights_hash(path)
    return {"weights": weights, "tokenizer": revision}


def run_fingerprint(config: TrainConfig, train_sha256: str) -> dict:
    """Everything that shapes the trained weights: the data, the recipe (but not where the base and the
    parent adapter happen to live: their content stands for them), and how often it saves not at all."""
    recipe = {k: v for k, v in result_fields(config).items() if k not in ("base_model", "init_adapter")}
    parent = adapter_hash(Path(config.init_adapter)) if config.init_adapter else None
    return {"train_sha256": train_sha256, "config": recipe, "base": base_identity(config.base_model),
            "init_adapter_sha256": parent}


def finished_state(checkpoint: str | None) -> TrainerState | None:
    """The trainer state of a checkpoint that already holds the run's last step, else None. Resuming
    from such a checkpoint, the Trainer trains one step more than max_steps (transformers 5), so a
    re-run of a finished training would change the adapter instead of reproducing it."""
    if checkpoint is None:
        return None
    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    return state if 0 < state.max_steps <= state.global_step else None


def load_checkpoint_weights(trainer, checkpoint: str) -> None:
    """Put a checkpoint's adapter weights into the trainer's (freshly initialised) peft model."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(trainer.model, load_file(str(Path(checkpoint) / "adapter_model.safetensors")))


def _resume_point(output_dir: Path, fingerprint: dict) -> tuple[Path, str | None]:
    """This run's checkpoint folder (keyed by its fingerprint) and the checkpoint to resume from."""
    run_dir = output_dir / CHECKPOINTS / content_hash(fingerprint, 16)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / FINGERPRINT, json.dumps(fingerprint, indent=1, sort_keys=True))
    return run_dir, last_complete_checkpoint(run_dir)


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
    checkpoint_dir, resume_from = _resume_point(Path(output_dir), run_fingerprint(config, train_sha256))
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
        callbacks=[timer, MarkComplete(), *callbacks],
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
    finished = finished_state(prep.resume_from)
    if finished is not None:  # the run is complete: take its last checkpoint as it is
        load_checkpoint_weights(trainer, prep.resume_from)
        trainer.state = finished
    else:
        trainer.train(resume_from_checkpoint=prep.resume_from)
    train_time = time.perf_counter() - t0
    state = trainer.state
    losses = loss_points(state.log_history)
    completed = state.global_step >= state.max_steps
    adapter_dir = output_dir / ADAPTER if completed else None
    partial = _save_adapter(trainer, output_dir / f".{ADAPTER}.partial") if completed else None
    if trainer.is_world_process_zero():  # under `accelerate launch`, one process writes the records
        write_loss_curve(output_dir, losses)
        if partial is not None and adapter_dir is not None:
            write_provenance(partial, config, Path(train_file), prep.train_sha256, prep.stats, losses,
                             train_time, state.global_step, state.num_input_tokens_seen)
            publish_adapter(partial, adapter_dir)
    trainer.accelerator.wait_for_everyone()
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


def _save_adapter(trainer, partial: Path) -> Path:
    """Save the final adapter into a folder of its own (published by `publish_adapter`).

    `Trainer.save_model` rather than `save_pretrained`: every process must call it, so that DeepSpeed
    ZeRO-3 can gather the sharded weights; it also writes the tokenizer beside the adapter.
    """
    main = trainer.is_world_process_zero()
    if main:
        shutil.rmtree(partial, ignore_errors=True)
    trainer.save_model(str(partial))
    if main:
        (partial / "training_args.bin").unlink(missing_ok=True)  # a pickle, and a copy of provenance.config
        canonical_adapter_config(partial)
    trainer.accelerator.wait_for_everyone()
    return partial


def canonical_adapter_config(folder: Path) -> None:
    """Rewrite adapter_config.json in a fixed order. peft writes `target_modules` from a set, whose order
    changes with each process's string hashing; the adapter's content hash is its identity in episode
    ids and cache keys, so the same training must give the same file."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in ("target_modules", "modules_to_save", "exclude_modules"):
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def publish_adapter(partial: Path, link: Path) -> Path:
    """Make the finished adapter folder `partial` what `link` (e.g. `adapter`) names, atomically.

    The folder is renamed to `adapter-<weights sha>` and `link` becomes a relative symlink to it by
    an atomic rename over the old link, so a reader always finds a whole adapter, the old or the new,
    never none. (Two renames of real folders would leave a moment with none.) The version the link
    named until now is kept (a reader may have resolved the link to it a moment before the swap and
    still be reading it); older ones are removed. A real folder at `link` (another layout) is moved
    aside first.
    """
    version = link.with_name(f"{link.name}-{sha256_file(partial / 'adapter_model.safetensors')[:16]}")
    current = os.readlink(link) if link.is_symlink() else None
    if current == version.name:  # identical weights already published: keep that folder
        shutil.rmtree(partial)
    else:
        shutil.rmtree(version, ignore_errors=True)
        partial.rename(version)
    if link.exists() and not link.is_symlink():
        link.rename(link.with_name(f"{link.name}-previous-{time.time_ns()}"))
    tmp = link.with_name(f".{link.name}.link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(version.name, tmp)
    os.replace(tmp, link)
    for old in link.parent.glob(f"{link.name}-*"):
        if old.name not in (version.name, current) and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return link
