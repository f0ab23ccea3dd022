"""The hf backend and training on a CUDA GPU (skipped without one; CI has none).

Run on a GPU machine with `pytest -m cuda tests/test_cuda.py`. The model is the embedded one, or
the folder `SOTOPIA_PI_CUDA_MODEL` names (a config and tokenizer with any weights will do: these
tests check the CUDA code paths -- the batch KV buffer, grammar masks and sampling on the device,
chained decoding, log-probabilities, LoRA training in bf16 -- not what the model says).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from sotopia_pi_lib.llm import LLMRequest, Message, ModelSpec, SamplingParams
from sotopia_pi_lib.llm.hf import HFModel
from sotopia_pi_lib.pi.sft_data import SFTExample, write_examples
from sotopia_pi_lib.pi.train import train_adapter
from sotopia_pi_lib.pi.train_config import TrainConfig
from sotopia_pi_lib.sim.prompts import action_schema

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
# no maxLength: random weights emit stray UTF-8 bytes, which decode to more characters than the
# grammar counted (a real model does not; the embedded model's tests keep the bound)
SCHEMA = action_schema(["none", "speak", "non-verbal communication", "action", "leave"])


@pytest.fixture(scope="module")
def model_path() -> str:
    given = os.environ.get("SOTOPIA_PI_CUDA_MODEL")
    if given:
        return given
    from sotopia_pi_lib.data import ensure_embedded_model

    return str(ensure_embedded_model())


def action(i: int, temperature: float = 1.0, history: str = "") -> LLMRequest:
    text = f"You are agent {i} at a market. Turn {i}: what do you do?{history}"
    return LLMRequest(
        messages=(Message(role="user", content=text),), json_schema=SCHEMA,
        sampling=SamplingParams(temperature=temperature, max_tokens=96), seed=i, session=f"agent{i}",
    )  # fmt: skip


def test_schema_generation_and_chained_turns_on_the_gpu(model_path: str) -> None:
    m = HFModel(ModelSpec(backend="hf", model=model_path, options={"device": "cuda"}))
    assert m.identity()["dtype"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    out = m.generate([action(i) for i in range(48)])
    assert all(r.ok and r.parsed is not None for r in out), [r.error for r in out if not r.ok]
    assert m._loaded.net.device.type == "cuda"  # type: ignore[union-attr]

    got = {}

    def then(key, response):
        got[key] = response
        name, step = key
        return [] if step == 2 else [((name, step + 1), action(name, history=f" Earlier: {response.text}"))]

    m.reset_stats()
    m.generate_chained([((i, 0), action(i)) for i in range(8)], then)
    assert len(got) == 24 and all(r.ok and r.parsed is not None for r in got.values())
    assert m.stats.prefill_tokens_reused > 0  # follow-ups reuse their session's KV on the device


def test_gpu_logprobs_match_the_cpu(model_path: str) -> None:
    prompts = [(Message(role="user", content=f"Question {i}: 2+{i}? A) 1 B) 2 C) 3 D) 4. Answer:"),) for i in range(6)]
    exact = {"dtype": "float32"}
    gpu = HFModel(ModelSpec(backend="hf", model=model_path, options=exact | {"device": "cuda"}))
    cpu = HFModel(ModelSpec(backend="hf", model=model_path, options=exact | {"device": "cpu"}))
    for g, c in zip(gpu.choice_logprobs(prompts, list("ABCD")), cpu.choice_logprobs(prompts, list("ABCD")), strict=True):
        assert list(g.values()) == pytest.approx(list(c.values()), abs=2e-3)


def test_lora_training_in_bf16_on_the_gpu(model_path: str, tmp_path: Path) -> None:
    examples = [
        SFTExample.chat(
            [Message(role="user", content=f"Say hello to friend {i}.")],
            json.dumps({"action_type": "speak", "argument": f"Hello friend {i}, good to see you!"}),
            episode_id=f"ep{i}", turn=0, agent=0, source="bc", value=8.0,
        )  # fmt: skip
        for i in range(8)
    ]
    data = write_examples(tmp_path / "train.jsonl", examples)
    config = TrainConfig(
        base_model=model_path, precision="bf16", max_steps=12, batch_size=4, lr=1e-3, max_length=128,
        warmup_ratio=0.0, save_steps=100, logging_steps=1,
    )  # fmt: skip
    result = train_adapter(config, data, tmp_path / "run")
    assert result.completed and result.adapter_dir is not None
    losses = [p.loss for p in result.losses]
    assert losses[-1] < 0.9 * losses[0], losses  # random weights (as the GPU check uses) learn slowly
    tuned = HFModel(ModelSpec(backend="hf", model=model_path, adapter=str(result.adapter_dir), options={"device": "cuda"}))
    assert all(r.ok for r in tuned.generate([action(i, temperature=0.0) for i in range(4)]))
