"""The notebooks as files: one literal parameters cell matching the config, no logic, no outputs."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from sotopia_pi_lib.config import load_config
from sotopia_pi_lib.pipeline.context import resolve_params
from sotopia_pi_lib.store.run import STAGES

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
# Statements and expressions that decide or repeat: a notebook calls the library, which does both.
# Comprehensions stay allowed (a `for` or `if` inside one is not an ast.For / ast.If node).
CONTROL_FLOW = ast.If | ast.IfExp | ast.For | ast.AsyncFor | ast.While | ast.Try | ast.With | ast.Match


def _control_flow(source: str) -> list[str]:
    return [type(n).__name__ for n in ast.walk(ast.parse(source)) if isinstance(n, CONTROL_FLOW)]


def test_control_flow_is_found_in_statements_and_expressions_but_not_in_comprehensions():
    assert _control_flow("if x:\n    y = 1") == ["If"]
    assert _control_flow("for a in b:\n    f(a)") == ["For"]
    assert _control_flow("t = f(m) if m else 'off'") == ["IfExp"]
    assert _control_flow("r = {s: f(s) for s in xs if s}\nq = [p for ps in d.values() for p in ps]") == []


@pytest.mark.parametrize("stage", STAGES)
def test_notebook_shape(stage):
    nb = nbformat.read(NOTEBOOKS / f"{stage}.ipynb", as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    values = {}
    for node in ast.parse(params[0].source).body:
        assert isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant), "literals only"
        values[node.target.id] = node.value.value
    assert set(values) == {"run", "params"}
    assert load_config(resolve_params(values["params"])).run.name  # the default profile validates
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    for c in code:
        tree = ast.parse(c.source)
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)], "logic belongs in the library"
        assert not _control_flow(c.source), f"{stage}: control flow belongs in the library:\n{c.source}"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {stage[:2]}")
    assert "**Reads**" in nb.cells[0].source and "**Writes**" in nb.cells[0].source
    assert nb.cells[-1].source.startswith("ctx.finish") or "ctx.finish(" in nb.cells[-1].source
