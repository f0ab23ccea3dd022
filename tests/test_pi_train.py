"""Policy update on the real embedded model: masking, loss, adapter effect, resume, QLoRA, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from sotopia_pi_lib.errors import ConfigError, DataError
from sotopia_pi_lib.llm.types import Message
from sotopia_pi_lib.pi import train as train_mod
from sotopia_pi_lib.pi.sft_data import SFTExample, write_examples
from sotopia_pi_lib.pi.sft_encode import IGNORE_INDEX, encode_example
from sotopia_pi_lib.pi.train import prepare_training, train_adapter
from sotopia_pi_lib.pi.train_config import TrainConfig

NAMES = [("Mia Davis", "Benjamin Jackson"), ("Ava Martinez", "Noah Lee"), ("Liam Chen", "Emma Brown"),
         ("Olivia Wang", "Lucas Green")]  # fmt: skip
ARGUMENTS = ["Could I wear the wizard costume tonight? It means a lot to me.",
             "Let's split the bill evenly, that seems fair to both of us.",
             "I would rather not talk about my old band, if that's okay.",
             "Thanks for coming, I brought tea for us."]  # fmt: skip


def _examples() -> list[SFTExample]:
    out = []
    for i, ((me, other), arg) in enumerate(zip(NAMES, ARGUMENTS, strict=True)):
        prompt = [
            Message(role="system", content=f"Imagine you are {me}. Act as {me} would."),
            Message(
                role="user",
                content=f'Scenario: two friends meet. {other} said: "Hi {me}!"\n'
                f"You are at Turn #{i}. Reply with a JSON action.",
            ),
        ]
        action = json.dumps({"action_type": "speak", "argument": arg})
        out.append(
            SFTExample.chat(prompt, action, episode_id=f"ep{i}", turn=i, agent=0, source="bc", value=8.0)
        )
    return out


def _config(**kw) -> TrainConfig:
    base = {"max_length": 256, "warmup_ratio": 0.0, "save_steps": 100, "logging_steps": 1, "seed": 0}
    return TrainConfig(**(base | kw))


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    return write_examples(tmp_path_factory.mktemp("data") / "train.jsonl", _examples())


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    return AutoTokenizer.from_pretrained(embedded_model_dir)


class StopAfter(TrainerCallback):
    """Stands in for an interruption: ends training after `steps` optimizer steps."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.steps:
            control.should_training_stop = True


# ---- masking and truncation (tokenizer only) -------------------------------------------------------------


@pytest.mark.model
def test_labels_cover_only_the_completion(tokenizer):
    ex = _examples()[0]
    row, outcome = encode_example(ex, tokenizer, max_length=256)
    prompt_ids = tokenizer.apply_chat_template(
        [m.model_dump() for m in ex.prompt], tokenize=True, return_dict=True, add_generation_prompt=True
    )["input_ids"]
    n = len(prompt_ids)
    assert outcome == "kept" and row["input_ids"][:n] == list(prompt_ids)
    assert row["labels"][:n] == [IGNORE_INDEX] * n
    assert row["labels"][n:] == row["input_ids"][n:]
    assert tokenizer.decode(row["labels"][n:]) == ex.completion_text + "<|im_end|>\n"


@pytest.mark.model
def test_overlong_examples_never_lose_completion_tokens(tokenizer):
    ex = _examples()[1]
    full, _ = encode_example(ex, tokenizer, max_length=256)
    n_completion = sum(t != IGNORE_INDEX for t in full["labels"])
    limit = len(full["input_ids"]) - 10
    assert encode_example(ex, tokenizer, limit, "drop") == (None, "dropped")
    cut, outcome = encode_example(ex, tokenizer, limit, "truncate_left")
    assert outcome == "truncated" and len(cut["input_ids"]) == limit
    assert cut["input_ids"] == full["input_ids"][10:]  # the oldest prompt tokens go first
    assert sum(t != IGNORE_INDEX for t in cut["labels"]) == n_completion
    assert encode_example(ex, tokenizer, n_completion, "truncate_left") == (None, "dropped")


@pytest.mark.model
def test_trainer_batches_mask_prompt_and_padding(train_file, tokenizer, tmp_path):
    prep = prepare_training(_config(batch_size=2, max_steps=1), train_file, tmp_path)
    expected = {}
    for ex in _examples():
        row, _ = encode_example(ex, tokenizer, 256)
        expected[tuple(row["input_ids"])] = row["labels"]
    batch = next(iter(prep.trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 2
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        n = int(mask.sum())
        assert labels[n:].eq(IGNORE_INDEX).all()  # padding
        want = expected[tuple(ids[:n].tolist())]
        assert labels[:n].tolist() == want  # -100 over the prompt, the real ids over the completion
        completion = [t for t in want if t != IGNORE_INDEX]
        assert 0 < len(completion) < n // 2
        assert json.loads(tokenizer.decode(completion).removesuffix("<|im_end|>\n"))["action_type"] == "speak"


# ---- bad input fails before the model loads -----------------------------------------------------------


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(train_mod, "load_model", refuse)


@pytest.mark.model
def test_bad_training_files_fail_before_model_load(tmp_path, no_model_load, train_file):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="no training examples"):
        train_adapter(_config(), empty, tmp_path / "out1")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        train_file.read_text().splitlines()[0] + "\n" + json.dumps({"prompt": "hi", "completion": "yo"})
    )
    with pytest.raises(DataError, match=rf"{bad}:2: completion is not a JSON action"):
        train_adapter(_config(), bad, tmp_path / "out2")
    with pytest.raises(DataError, match="all 4 examples are longer than max_length=16"):
        train_adapter(_config(max_length=16), train_file, tmp_path / "out3")
    with pytest.raises(ConfigError, match="init_adapter"):
        train_adapter(_config(init_adapter=str(tmp_path / "missing")), train_file, tmp_path / "out4")


# ---- training --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(train_file, tmp_path_factory):
    """Overfit the four examples: every step sees all of them (batch 4) at a high constant lr."""
    config = _config(batch_size=4, max_steps=6, lr=3e-3, scheduler="constant")
    return train_adapter(config, train_file, tmp_path_factory.mktemp("run") / "bc")


@pytest.mark.model
def test_loss_falls_and_is_recorded(trained):
    losses = [p.loss for p in trained.losses]
    assert trained.completed and trained.global_step == 6 and len(losses) == 6
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.7 * losses[0], losses
    curve = json.loads((trained.output_dir / "loss_curve.json").read_text())
    assert [p["step"] for p in curve] == list(range(1, 7))
    assert (trained.output_dir / "loss_curve.csv").read_text().count("\n") == 7
    assert trained.tokens == sum(trained.step_tokens) > 0 and len(trained.step_times_s) == 6


@pytest.mark.model
def test_adapter_is_standard_peft_with_provenance(trained, train_file):
    adapter = trained.adapter_dir
    assert (adapter / "adapter_model.safetensors").is_file()
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 8 and cfg["lora_alpha"] == 32
    assert sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]
    prov = json.loads((adapter / "provenance.json").read_text())
    from sotopia_pi_lib.store.files import sha256_file

    assert prov["train_file"]["sha256"] == sha256_file(train_file) and prov["train_file"]["kept"] == 4
    assert prov["base_model"]["spec"] == "embedded" and prov["init_adapter"] is None
    assert prov["steps"] == 6 and len(prov["losses"]) == 6 and prov["versions"]["peft"]


def _completion_nll(model, tokenizer, ex: SFTExample) -> float:
    row, _ = encode_example(ex, tokenizer, 256)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]]))
    return out.loss.item()


@pytest.mark.model
def test_trained_adapter_changes_the_model(trained, embedded_model_dir, tokenizer):
    from peft import PeftModel

    ex = _examples()[2]
    prompt = tokenizer.apply_chat_template(
        [m.model_dump() for m in ex.prompt], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(embedded_model_dir), trained.adapter_dir
    )
    model.eval()
    gen = {"max_new_tokens": 16, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    tuned_out = model.generate(**prompt, **gen)
    tuned_nll = _completion_nll(model, tokenizer, ex)
    with model.disable_adapter():
        base_out = model.generate(**prompt, **gen)
        base_nll = _completion_nll(model, tokenizer, ex)
    assert not torch.equal(tuned_out, base_out)
    assert tuned_nll < 0.7 * base_nll, (tuned_nll, base_nll)

    # The hf backend loads the same adapter (unmerged, active) and gets the tuned model's likelihood.
    from sotopia_pi_lib.llm.hf_load import HFOptions, load

    loaded = load(str(embedded_model_dir), {"bc": str(trained.adapter_dir)}, HFOptions(device="cpu", dtype="float32"))
    assert _completion_nll(loaded.net, tokenizer, ex) == pytest.approx(tuned_nll, rel=1e-3)


@pytest.mark.model
def test_interrupted_training_resumes_from_its_last_complete_checkpoint(train_file, tmp_path):
    config = _config(batch_size=2, max_steps=4, save_steps=1)
    first = train_adapter(config, train_file, tmp_path / "run", callbacks=(StopAfter(2),))
    assert not first.completed and first.adapter_dir is None and first.global_step == 2
    [run_dir] = (tmp_path / "run" / "checkpoints").iterdir()
    assert (run_dir / "checkpoint-2" / train_mod.COMPLETE).is_file()
    assert not (tmp_path / "run" / "adapter").exists()
    torn = run_dir / "checkpoint-3"  # a kill -9 during the next save: some files, no completion mark
    torn.mkdir()
    (torn / "optimizer.pt").write_bytes(b"\x80half a pickle")

    second = train_adapter(config, train_file, tmp_path / "run")
    assert second.resumed_from and second.resumed_from.endswith("checkpoint-2")
    assert second.completed and second.global_step == 4 and len(second.step_times_s) == 2
    assert [p.step for p in second.losses] == [1, 2, 3, 4]
    assert (second.adapter_dir / "adapter_model.safetensors").is_file() and second.adapter_dir.is_symlink()

    straight = train_adapter(config, train_file, tmp_path / "straight")
    assert [p.loss for p in second.losses] == pytest.approx([p.loss for p in straight.losses], rel=1e-4)

    # Another recipe on the same folder never resumes these checkpoints: it trains afresh, under its own key
    other = train_adapter(_config(batch_size=2, max_steps=1, save_steps=1, lr=1e-3), train_file, tmp_path / "run")
    assert other.resumed_from is None and other.completed and len(other.step_times_s) == 1
    assert len(list((tmp_path / "run" / "checkpoints").iterdir())) == 2


@pytest.mark.model
def test_a_finished_run_run_again_reproduces_its_adapter(train_file, tmp_path):
    """A re-run stage trains the same folder again. Its last checkpoint ends mid-epoch (3 of 4 examples);
    resumed from there, the Trainer took a 4th step (transformers 5) and changed the adapter."""
    config = _config(batch_size=1, max_steps=3, save_steps=1)
    first = train_adapter(config, train_file, tmp_path / "run")
    weights = (first.adapter_dir / "adapter_model.safetensors").read_bytes()
    again = train_adapter(config, train_file, tmp_path / "run")
    assert again.resumed_from.endswith("checkpoint-3") and again.global_step == 3
    assert [p.step for p in again.losses] == [1, 2, 3]
    assert (again.adapter_dir / "adapter_model.safetensors").read_bytes() == weights


@pytest.mark.model
def test_continuing_from_an_adapter_records_its_parent(trained, train_file, tmp_path):
    result = train_adapter(_config(max_steps=1, init_adapter=str(trained.adapter_dir)), train_file, tmp_path)
    prov = json.loads((result.adapter_dir / "provenance.json").read_text())
    assert prov["init_adapter"]["path"] == str(trained.adapter_dir)
    assert prov["init_adapter"]["provenance"]["steps"] == 6
    # It continued from the trained weights: its first loss is already near the parent's last.
    assert result.losses[0].loss < 0.8 * trained.losses[0].loss


@pytest.mark.model
def test_qlora_quantizes_the_base_and_trains(train_file, tmp_path):
    import bitsandbytes as bnb

    prep = prepare_training(_config(qlora=True, max_steps=1, batch_size=2), train_file, tmp_path)
    model = prep.trainer.model
    q_proj = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    assert isinstance(q_proj, bnb.nn.Linear4bit)
    assert q_proj.weight.quant_type == "nf4" and q_proj.weight.compress_statistics  # double quantization
    lora_b = model.get_base_model().model.layers[0].self_attn.q_proj.lora_B["default"].weight
    assert lora_b.abs().sum().item() == 0  # LoRA B starts at zero ...
    prep.trainer.train()
    assert lora_b.abs().sum().item() > 0  # ... and one step moved it
    loss = prep.trainer.state.log_history[0]["loss"]
    assert math.isfinite(loss)
