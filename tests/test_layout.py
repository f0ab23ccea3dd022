"""The code's shape: imports run one way along the pipeline (a stage never imports a later one)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "sotopia_pi_lib"
# Pipeline order: data -> llm -> sim -> judge -> pi -> evaluate -> analysis. `errors`, `paths`, `strict` and
# `store` are the base every stage may use; `official` (SOTOPIA's own code, out of process, reached
# through the project's server) comes after llm and before the stages that drive it; `config`,
# `pipeline` and `serve` assemble the stages and come last.
RANK = {"errors": 0, "paths": 0, "redact": 0, "strict": 0, "store": 0, "data": 1, "llm": 2, "official": 3, "sim": 4, "judge": 5, "pi": 6,
        "evaluate": 7, "analysis": 8, "config": 9, "pipeline": 10, "serve": 10}


def _imports(path: Path) -> set[str]:
    """Top-level project packages a module imports at run time (type-checking-only imports excluded)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for child in node.body for n in ast.walk(child)}
    here = list(path.relative_to(PACKAGE).parent.parts)
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            parts = (here[: len(here) - (node.level - 1)] if node.level > 1 else here) + (node.module or "").split(".")
        elif node.module and node.module.startswith("sotopia_pi_lib."):
            parts = node.module.split(".")[1:]
        else:
            continue
        parts = [p for p in parts if p]
        if parts:
            out.add(parts[0])
    return out


def test_no_module_imports_a_later_stage():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        mine = rel.parts[0].removesuffix(".py")
        assert mine in RANK or mine == "__init__", f"{rel}: add its package to RANK"
        for other in _imports(path) - {mine}:
            if other in RANK and mine in RANK and RANK[other] > RANK[mine]:
                wrong.append(f"{rel} imports {other}")
    assert wrong == []
