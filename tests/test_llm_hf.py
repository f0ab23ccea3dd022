"""The hf backend with the real embedded model: structured output always parses, batching and session
reuse change nothing but float rounding, MMLU log-probabilities, adapters and 4-bit loading."""

from __future__ import annotations

import math
from pathlib import Path

import jsonschema
import pytest
import torch

from sotopia_pi_lib.errors import ConfigError
from sotopia_pi_lib.llm.engine.attention import PACKED_SDPA
from sotopia_pi_lib.llm.engine.cpu_linear import PackedLinear, can_pack
from sotopia_pi_lib.llm.hf import HFModel
from sotopia_pi_lib.llm.hf_load import cpu_has_native_bf16
from sotopia_pi_lib.llm.types import LLMRequest, Message, ModelSpec, SamplingParams
from sotopia_pi_lib.sim import ACTION_TYPES, action_schema

ACTION_SCHEMA = action_schema(ACTION_TYPES)
NAMES = ["Alice", "Bob", "Mia", "Omar", "Lena", "Tariq", "Sofia", "Ken"]
PLACES = ["a bakery", "a train station", "a job interview", "a family dinner"]


def prompt(i: int, extra: str = "") -> tuple[Message, ...]:
    scenario = f"You are {NAMES[i % 8]} at {PLACES[i % 4]}. Your goal: get a {i}% discount without lying. "
    history = " ".join(f"Turn {t}: {NAMES[(i + t) % 8]} said hello number {t}." for t in range(i % 5))
    return (
        Message(role="system", content="You play a character in a social scenario. Reply with one action."),
        Message(role="user", content=scenario + history + extra + " What do you do next?"),
    )


def action(i: int, temperature: float = 0.0, max_tokens: int = 64, **kw: object) -> LLMRequest:
    sampling = SamplingParams(temperature=temperature, max_tokens=max_tokens)
    return LLMRequest(messages=prompt(i), json_schema=ACTION_SCHEMA, sampling=sampling, seed=i, **kw)


@pytest.fixture(scope="module")
def model(embedded_model_dir: Path) -> HFModel:
    """float32: these tests compare paths token for token (alone vs batched, reused vs fresh prefix,
    against a direct forward); in bfloat16 (dtype auto on CPUs with native bf16) rounding differs
    between such paths enough to flip a token now and then."""
    return HFModel(ModelSpec(backend="hf", model="embedded", options={"dtype": "float32"}))


def test_unknown_option_names_the_key_and_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"'max_batch'.*known options: device, dtype, load_in_4bit"):
        HFModel(ModelSpec(backend="hf", model="embedded", options={"max_batch": 4}))
    with pytest.raises(ConfigError, match="dtype"):
        HFModel(ModelSpec(backend="hf", model="embedded", options={"dtype": "float8"}))


@pytest.mark.model
def test_identity_hashes_content_without_loading_weights(embedded_model_dir: Path) -> None:
    m = HFModel(ModelSpec(backend="hf", model="embedded", options={"max_batch_size": 4}))
    ident = m.identity()
    assert not m.loaded
    native = "bfloat16" if cpu_has_native_bf16() else "float32"  # what dtype auto resolves to here
    assert ident["backend"] == "hf" and ident["dtype"] == native and ident["load_in_4bit"] is False
    assert len(ident["weights_sha256"]) == 64 and ident["adapter_sha256"] is None
    # batching options do not change outputs, so they stay out of the identity (and the cache key)
    assert HFModel(ModelSpec(backend="hf", model="embedded")).identity() == ident


@pytest.mark.model
def test_64_schema_constrained_generations_all_parse_and_validate(embedded_model_dir: Path) -> None:
    model = HFModel(ModelSpec(backend="hf", model="embedded"))  # the default dtype, as users run it
    requests = [action(i, temperature=1.0 if i % 2 else 0.0, sample_index=i // 16) for i in range(64)]
    responses = model.generate(requests)
    failures = [(r.finish_reason, r.error, r.text) for r in responses if not r.ok]
    assert not failures, failures
    for r in responses:
        jsonschema.validate(r.parsed, ACTION_SCHEMA)
        assert r.finish_reason == "stop" and 0 < r.completion_tokens <= 64 and r.prompt_tokens > 20


@pytest.mark.model
def test_a_tight_budget_still_lands_valid_json(model: HFModel) -> None:
    """With max_tokens barely above the schema's minimum, landing closes the JSON in time."""
    responses = model.generate([action(i, temperature=1.0, max_tokens=20) for i in range(16)])
    assert all(r.ok and r.finish_reason == "stop" for r in responses), [(r.error, r.text) for r in responses]
    assert all(r.completion_tokens <= 20 for r in responses)


@pytest.mark.model
def test_greedy_is_deterministic_and_the_same_alone_or_batched(model: HFModel) -> None:
    alone = model.generate([action(3)])[0]
    again = model.generate([action(3)])[0]
    batched = model.generate([action(i) for i in range(8)])
    assert alone.text == again.text == batched[3].text
    assert alone.parsed == batched[3].parsed


@pytest.mark.model
def test_sampling_is_reproducible_per_request_alone_or_batched(model: HFModel) -> None:
    """Each request has its own random stream from (seed, sample_index); float noise from batching
    could in principle flip a draw that lands within ~1e-6 of a CDF step, which these do not."""
    alone = [model.generate([action(5, temperature=1.0, sample_index=k)])[0].text for k in range(3)]
    batched = model.generate(
        [action(i, temperature=1.0, sample_index=k) for k in range(3) for i in (2, 5, 7)]
    )
    assert [batched[1].text, batched[4].text, batched[7].text] == alone
    assert len(set(alone)) > 1  # another sample_index is another draw


@pytest.mark.model
def test_session_reuse_gives_the_outputs_of_a_fresh_prefill(embedded_model_dir: Path) -> None:
    reuse = HFModel(ModelSpec(backend="hf", model="embedded"))
    fresh = HFModel(ModelSpec(backend="hf", model="embedded", options={"kv_cache_bytes": 0}))
    first = [action(i, session=f"ep{i}/a") for i in range(4)]
    replies = reuse.generate(first)
    second = [
        LLMRequest(
            messages=(
                *r.messages,
                Message(role="assistant", content=out.text),
                Message(role="user", content=f"Bob says: no way ({i}). And now?"),
            ),
            json_schema=ACTION_SCHEMA,
            sampling=r.sampling,
            session=r.session,
        )  # fmt: skip
        for i, (r, out) in enumerate(zip(first, replies, strict=True))
    ]
    reused = reuse.generate(second)
    assert reuse.stats.prefill_tokens_reused >= sum(o.prompt_tokens for o in replies)
    assert reuse.stats.prefix_hits >= 4
    expected = fresh.generate(second)
    assert fresh.stats.prefill_tokens_reused == 0
    assert [r.text for r in reused] == [r.text for r in expected]


@pytest.mark.model
def test_length_finish_and_too_long_prompt_are_reported_per_request(model: HFModel) -> None:
    free = LLMRequest(messages=prompt(1), sampling=SamplingParams(temperature=0.0, max_tokens=5))
    huge = LLMRequest(
        messages=(Message(role="user", content="word " * 9000),), sampling=SamplingParams(max_tokens=5)
    )
    short, too_long = model.generate([free, huge])
    assert short.ok and short.finish_reason == "length" and short.completion_tokens == 5
    assert too_long.finish_reason == "error" and "context" in (too_long.error or "")


@pytest.mark.model
def test_choice_logprobs_match_a_direct_forward(model: HFModel) -> None:
    prompts = [
        prompt(i, extra=" Question: 2+2? A) 3 B) 4 C) 5 D) 6. Answer with a letter.") for i in range(5)
    ]
    rows = model.choice_logprobs(prompts, ["A", "B", "C", "D"])
    assert all(set(r) == {"A", "B", "C", "D"} and all(math.isfinite(v) for v in r.values()) for r in rows)
    net, tok = model._loaded.net, model._loaded.tokenizer  # type: ignore[union-attr]
    assert isinstance(net.lm_head, PackedLinear) == can_pack(net.dtype)  # weights packed for oneDNN
    assert net.config._attn_implementation == PACKED_SDPA  # on the CPU; a forward without a mask (below)
    # falls through to transformers' sdpa, so the comparison cross-checks the packed attention
    for p, row in zip(prompts, rows, strict=True):
        ids = torch.tensor([model.prompt_ids(p)])
        with torch.inference_mode():
            direct = torch.log_softmax(net(input_ids=ids).logits[0, -1].float(), -1)
        for letter, value in row.items():
            assert value == pytest.approx(
                direct[tok.encode(letter, add_special_tokens=False)[0]].item(), abs=1e-3
            )
    with pytest.raises(ConfigError, match="share a first token"):
        model.choice_logprobs(prompts[:1], ["the cat", "the dog"])


def random_adapter(folder: Path, base_dir: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    lora = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(folder)
    return folder


@pytest.mark.model
def test_adapter_variants_share_one_base_and_keep_their_kv_apart(
    tmp_path: Path, embedded_model_dir: Path, model: HFModel
) -> None:
    """Two LoRA variants and the base through one pool: one load, adapters unmerged on the packed base,
    each variant answering as it does alone; the KV store keeps one namespace per adapter."""
    from sotopia_pi_lib.llm.pool import EnginePool

    folders = [random_adapter(tmp_path / f"a{k}", embedded_model_dir, k) for k in (1, 2)]
    pool = EnginePool()
    spec = model.spec  # float32
    base, one, two = (HFModel(spec.model_copy(update={"adapter": a and str(a)}), pool.bases.setdefault(
        "b", HFModel.Base(spec))) for a in (None, *folders))  # fmt: skip
    assert one.identity()["adapter_sha256"] != two.identity()["adapter_sha256"] and base.identity() == model.identity()
    requests = [action(i, session=f"ep{i}/0") for i in range(3)]
    outs = {name: m.generate(requests) for name, m in (("base", base), ("one", one), ("two", two))}
    assert base.base.loads == 1 and base.path == "engine"
    assert len({tuple(r.text for r in o) for o in outs.values()}) == 3  # three different models
    assert [r.text for r in outs["base"]] == [r.text for r in model.generate(requests)]
    alone = HFModel(spec.model_copy(update={"adapter": str(folders[0])}))
    assert [r.text for r in alone.generate(requests)] == [r.text for r in outs["one"]]
    net = base._loaded.net  # type: ignore[union-attr]
    q = net.model.layers[0].self_attn.q_proj
    assert set(q.lora_A) == {"adapter1", "adapter2"}  # both on the one base, not merged
    assert isinstance(q.base_layer, PackedLinear) == can_pack(torch.float32)
    keys = set(base.base._runner.sessions._entries)  # type: ignore[union-attr]
    assert {"ep0/0", "ep0/0@adapter1", "ep0/0@adapter2"} <= keys
    before = base.stats.prefill_tokens_reused
    assert [r.text for r in one.generate(requests)] == [r.text for r in outs["one"]]  # its own KV, reused
    assert base.stats.prefill_tokens_reused - before >= sum(r.prompt_tokens for r in outs["one"]) - 3
    for m in (base, one):
        m.close()
    assert base.base.loaded  # `two` still uses it
    two.close()
    assert not base.base.loaded


@pytest.mark.model
def test_4bit_loading_generates_valid_json(embedded_model_dir: Path) -> None:
    m = HFModel(ModelSpec(backend="hf", model="embedded", options={"load_in_4bit": True}))
    assert m.identity()["load_in_4bit"] is True
    out = m.generate([action(0, max_tokens=32)])[0]
    assert out.ok, out.error
    assert "Linear4bit" in {type(mod).__name__ for mod in m._loaded.net.modules()}  # type: ignore[union-attr]


@pytest.mark.model
def test_forced_text_is_canonical_and_a_fully_forced_reply_stops(model: HFModel) -> None:
    fixed = {"type": "object", "properties": {"verdict": {"enum": ["agree"]}}, "required": ["verdict"]}
    out = model.generate(
        [LLMRequest(messages=prompt(0), json_schema=fixed, sampling=SamplingParams(temperature=1.0))]
    )
    assert out[0].ok and out[0].parsed == {"verdict": "agree"} and out[0].finish_reason == "stop"
    tokenizer = model._loaded.tokenizer  # type: ignore[union-attr]
    reply_tokens = tokenizer.encode(out[0].text, add_special_tokens=False)
    assert out[0].completion_tokens == len(reply_tokens)  # stopped without spending a step on EOS


@pytest.mark.model
def test_bfloat16_generates_valid_json(embedded_model_dir: Path) -> None:
    m = HFModel(ModelSpec(backend="hf", model="embedded", options={"dtype": "bfloat16"}))
    assert m.identity()["dtype"] == "bfloat16"
    outs = m.generate([action(i, max_tokens=32) for i in range(3)])
    assert all(o.ok for o in outs), [o.error for o in outs]
