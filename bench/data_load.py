"""How long the inputs take to load (targets: SOTOPIA < 1 s, saved embedded model < 10 s).

Run: .venv/bin/python bench/data_load.py
"""

from __future__ import annotations

import subprocess
import sys
import time


def timed(label: str, fn, target_s: float | None = None):
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    verdict = (
        "" if target_s is None else f"  (target < {target_s:g} s: {'ok' if dt < target_s else 'MISSED'})"
    )
    print(f"{label:<48} {dt:7.3f} s{verdict}")
    return out


def main() -> None:
    from sotopia_pi_lib.data import embedded_model_dir, load_mmlu, load_sotopia

    d = timed("load SOTOPIA profiles, combos, task sets", load_sotopia, 1.0)
    timed(
        "  build sotopia_all + sotopia_hard", lambda: (d.task_set("sotopia_all"), d.task_set("sotopia_hard"))
    )
    timed("load MMLU (14,042 questions)", lambda: load_mmlu(source="wheel"))

    def imports():
        import torch  # noqa: F401
        import transformers

        _ = transformers.AutoModelForCausalLM, transformers.AutoTokenizer  # lazy modules
        return transformers

    transformers = timed("import torch + transformers (once per process)", imports)

    def load_model():
        transformers.AutoTokenizer.from_pretrained(embedded_model_dir())
        return transformers.AutoModelForCausalLM.from_pretrained(embedded_model_dir())

    timed("load saved embedded model (tokenizer + weights)", load_model, 10.0)
    timed(
        "second `python -m sotopia_pi_lib.data all` (no-op)",
        lambda: subprocess.run(
            [sys.executable, "-m", "sotopia_pi_lib.data", "all"], check=True, capture_output=True
        ),
        5.0,
    )


if __name__ == "__main__":
    main()
