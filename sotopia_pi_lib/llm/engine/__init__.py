"""The hf backend's inference engine: continuous batching, KV kept across calls, packed attention and
packed weights on the CPU, grammar-forced text fed at once (decode.py says why each exists).

It reaches into private transformers and torch internals (hooks.py lists every one, with the versions
it was tested with), so it is kept behind one narrow interface and never imported by anything but the
hf backend:

    engine = start(net, book, EngineSettings(stop_ids=..., pad_id=...))  # or raises EngineUnavailable
    outcomes = engine.run(jobs, on_done)   # jobs.py: Job in, Outcome out
    engine.stats, engine.close()

`start` refuses (EngineUnavailable, saying why) when the installed versions are not the tested ones,
a hook is missing, or the self-check on the loaded model fails; the backend then runs its plain
transformers path (hf_plain.py). Nothing here imports transformers internals until `start` is called,
so a moved hook shows up as that refusal, not as an ImportError of the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hooks import EngineUnavailable, check_input, check_layers, missing_hook, reference_logits, self_check
from .hooks import version_problem as version_problem
from .settings import EngineSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..grammar import GrammarBook
    from .decode import Engine

__all__ = ["EngineSettings", "EngineUnavailable", "start", "version_problem"]


def start(net: Any, book: Callable[[], GrammarBook], settings: EngineSettings) -> Engine:
    """The engine over a loaded model, after the checks in hooks.py; on the CPU it first switches the
    model to packed attention and packs its linear weights (so a refusal after that point says
    `modified`: the caller must reload the model for its plain path)."""
    problem = (None if settings.ignore_versions else version_problem()) or missing_hook()
    problem = problem or check_layers(net.config)
    if problem:
        raise EngineUnavailable(problem)
    try:
        from .decode import Engine
    except ImportError as e:  # a transformers internal the engine imports has moved
        raise EngineUnavailable(f"the engine cannot import a transformers or torch internal: {e}") from e
    ids = check_input(net.config.vocab_size)
    reference = reference_logits(net, ids)
    prepare(net, settings.pack_weights)
    try:
        problem = self_check(net, ids, reference, settings.pad_id)
    except Exception as e:  # noqa: BLE001 -- any failure of the engine's path means: do not use it
        problem = f"the engine's self-check raised {type(e).__name__}: {e}"
    if problem:
        raise EngineUnavailable(problem, modified=True)
    return Engine(net, book, settings)


def prepare(net: Any, pack_weights: bool) -> None:
    """On the CPU: packed grouped-query attention for masked multi-token calls (attention.py) and, if
    asked and oneDNN multiplies the dtype natively, linear weights packed once (cpu_linear.py).
    Both were measured on CPUs only; CUDA keeps transformers' sdpa and plain weights."""
    if net.device.type != "cpu":
        return
    if net.config._attn_implementation == "sdpa":
        from .attention import PACKED_SDPA  # registers it with transformers

        net.set_attn_implementation(PACKED_SDPA)
    if pack_weights:
        from .cpu_linear import can_pack, pack_linears

        if can_pack(net.dtype):
            pack_linears(net)  # after any adapter is merged: it packs the merged weights
