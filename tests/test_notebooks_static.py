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
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {stage[:2]}")
    assert "**Reads**" in nb.cells[0].source and "**Writes**" in nb.cells[0].source
    assert nb.cells[-1].source.startswith("ctx.finish") or "ctx.finish(" in nb.cells[-1].source
