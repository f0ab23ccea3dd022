"""Linear layers packed for oneDNN give the outputs of the plain ones (bit-identical in bfloat16)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_llama import tiny_llama
from torch import nn

from sotopia_pi_lib.llm.engine import prepare
from sotopia_pi_lib.llm.engine.cpu_linear import PackedLinear, can_pack, pack_linears
from sotopia_pi_lib.llm.hf_load import HFOptions, load

DTYPES = [d for d in (torch.float32, torch.bfloat16) if can_pack(d)]


@pytest.mark.skipif(not DTYPES, reason="this torch has no oneDNN")
@pytest.mark.parametrize("dtype", DTYPES)
@torch.inference_mode()
def test_packed_model_gives_the_plain_models_logits(dtype: torch.dtype) -> None:
    net = tiny_llama(dtype, attention_bias=True)
    ids = torch.randint(0, 97, (3, 11), generator=torch.Generator().manual_seed(1))
    before = net(input_ids=ids).logits
    linears = sum(type(m) is nn.Linear for m in net.modules())
    assert pack_linears(net) == linears == 2 * 7 + 1  # q k v o gate up down per layer, and the head
    assert not any(type(m) is nn.Linear for m in net.modules())
    after = net(input_ids=ids).logits
    if dtype == torch.bfloat16:
        assert torch.equal(before, after)  # the same oneDNN kernel, minus the per-call reorder
    else:
        torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    one_row = net(input_ids=ids[:1, :1]).logits  # decode-step shape
    torch.testing.assert_close(one_row[0, 0].float(), after[0, 0].float(), atol=2e-2, rtol=0)


def test_subclasses_of_linear_are_left_alone() -> None:
    class Special(nn.Linear):
        pass

    net = nn.Sequential(nn.Linear(4, 4), Special(4, 4))
    if not can_pack(torch.float32):
        pytest.skip("this torch has no oneDNN")
    assert pack_linears(net) == 1
    assert isinstance(net[0], PackedLinear) and type(net[1]) is Special


@pytest.mark.model
@pytest.mark.skipif(not can_pack(torch.bfloat16), reason="this CPU has no native bfloat16 in oneDNN")
@torch.inference_mode()
def test_the_engine_packs_the_embedded_model_bit_identically(embedded_model_dir: Path) -> None:
    """What the engine makes of the loaded model on a CPU (pack_weights, the default) against the same
    with plain nn.Linear (pack_weights: false): every linear packed, the same bfloat16 logits."""
    ids = torch.randint(0, 40_000, (2, 40), generator=torch.Generator().manual_seed(2))
    logits = {}
    for pack in (False, True):
        net = load(str(embedded_model_dir), {}, HFOptions(dtype="bfloat16")).net
        prepare(net, pack_weights=pack)
        linears = [m for m in net.modules() if isinstance(m, nn.Linear | PackedLinear)]
        assert len(linears) == 30 * 7 + 1 and all(isinstance(m, PackedLinear) == pack for m in linears)
        logits[pack] = net(input_ids=ids).logits
    assert torch.equal(logits[True], logits[False])
