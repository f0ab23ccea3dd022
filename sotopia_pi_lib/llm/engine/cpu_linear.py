"""Linear layers with their weights packed once for oneDNN, for inference on the CPU.

torch's nn.Linear hands oneDNN the weight in PyTorch's layout, and oneDNN reorders it into its
blocked layout on every call; for the few rows of a decode step that reorder is most of the work.
Packed once at load (what torch.compile's CPU weight freezing does, without compiling), a decode
step's matrix products skip that reorder; inputs of hundreds of rows (prompts) take the same time
either way. bench/cpu_linear.py measures both, packed against plain, side by side.
It is the same oneDNN kernel, so bfloat16 outputs are bit-identical; float32 ones differ by rounding
(~1e-4), since oneDNN then replaces MKL's sgemm.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

PACK_ROWS_HINT = 16  # oneDNN picks its blocking for this many rows; 1-128 rows all ran fast with it


def can_pack(dtype: torch.dtype) -> bool:
    """oneDNN is in this torch build and multiplies `dtype` natively (bfloat16 needs AVX512-BF16/AMX)."""
    if not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype == torch.float32


class PackedLinear(nn.Module):
    """nn.Linear's forward with the weight kept in oneDNN's layout. Inference only (no gradient)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with torch.no_grad():
            self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), PACK_ROWS_HINT)
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def pack_linears(net: Any) -> int:
    """Swap every plain nn.Linear of `net` for a PackedLinear and return how many. Subclasses stay
    (bitsandbytes' 4-bit layers, LoRA wrappers): their forward is not a plain matmul. A LoRA wrapper's
    base layer is packed, its low-rank matrices are not (peft reads their `.weight`); what the unmerged
    adapters cost a decode step is measured by bench/adapters.py."""
    targets = [
        name for name, module in net.named_modules()
        if type(module) is nn.Linear and not any(part.startswith("lora_") for part in name.split("."))
    ]  # fmt: skip
    for name in targets:
        parent, _, child = name.rpartition(".")
        owner = net.get_submodule(parent) if parent else net
        setattr(owner, child, PackedLinear(getattr(owner, child)))
    return len(targets)
