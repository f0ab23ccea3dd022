"""The hf backend's plain path (hf_plain.py: model.generate with xgrammar's logits processor), forced
with `engine: off`: the engine's tokens in float32 at temperature 0, schema-valid output by the same
rules, and a whole episode and its judgement played through it."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from test_llm_hf import ACTION_SCHEMA, action, prompt  # tests/ is on sys.path (no package)

from sotopia_pi_lib.judge import judge_episodes
from sotopia_pi_lib.llm.hf import HFModel
from sotopia_pi_lib.llm.registry import CachedLLM
from sotopia_pi_lib.llm.types import LLMRequest, ModelSpec, SamplingParams
from sotopia_pi_lib.sim import RuleConfig, RunConfig, make_specs, run_episodes, setups_for_task_set

pytestmark = pytest.mark.model
EXACT = {"dtype": "float32"}


@pytest.fixture(scope="module")
def plain(embedded_model_dir: Path) -> HFModel:
    return HFModel(ModelSpec(backend="hf", model="embedded", options=EXACT | {"engine": "off"}))


@pytest.fixture(scope="module")
def engine(embedded_model_dir: Path) -> HFModel:
    return HFModel(ModelSpec(backend="hf", model="embedded", options=EXACT))


def test_both_paths_write_the_same_tokens_in_float32_at_temperature_0(plain: HFModel, engine: HFModel) -> None:
    """Forced JSON text in canonical tokens, landing on a tight budget, free text cut by max_tokens:
    the same replies token for token, and the same token counts (a reply whose JSON is complete stops
    without counting an end-of-sequence token, on both paths). Sampled replies in the same batch
    parse too."""
    free = LLMRequest(messages=prompt(1), sampling=SamplingParams(temperature=0.0, max_tokens=12))
    greedy = [action(i) for i in range(3)] + [action(5, max_tokens=20), free]
    sampled = [action(i, temperature=1.0, sample_index=1) for i in (2, 7)]
    a, b = engine.generate(greedy), plain.generate(greedy + sampled)
    assert engine.path == "engine" and plain.path == "plain" and plain.plain_reason == "hf option engine: off"
    assert [(r.text, r.completion_tokens, r.finish_reason) for r in b[: len(greedy)]] == [
        (r.text, r.completion_tokens, r.finish_reason) for r in a
    ]
    assert all(r.ok for r in b) and b[4].finish_reason == "length" and b[4].completion_tokens == 12
    for r in b[:4] + b[5:]:
        jsonschema.validate(r.parsed, ACTION_SCHEMA)


def test_an_episode_and_its_judgement_through_the_plain_path(sotopia, plain: HFModel) -> None:
    """What the pipeline asks of the hf backend, on the plain path: agents' turns (the runner chains
    them; the plain path plays rounds of its own batches) and a SOTOPIA-EVAL rating."""
    setup = setups_for_task_set(sotopia, "sotopia_all")[7]
    config = RunConfig(
        rules=RuleConfig(max_turns=2), sampling=SamplingParams(temperature=1.0, max_tokens=60),
        max_argument_chars=60, progress=False,
    )  # fmt: skip
    llm = CachedLLM(plain, None)
    played = run_episodes(make_specs([setup], ("m", "m"), seed=1), {"m": llm}, config)
    assert played.summary.failed == 0 and [len(r.turns) for r in played.records] == [3]  # the limit of 2 exceeded
    ratings = judge_episodes(played.records, llm, progress=False, reasoning_max_chars=16)
    assert len(ratings) == 1 and ratings[0].completion_tokens > 0
    for agent in ratings[0].agents:
        assert agent.scores["goal"] in range(0, 11) and agent.scores["secret"] in range(-10, 1)
