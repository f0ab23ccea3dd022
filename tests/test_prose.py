"""The prose says what the code does, not how it came to be: no development history in the README, the
docs or the library's docstrings (git log is the history)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# Phrases that only narrate the project's past. Not "now" or "used to" alone: "what it holds now",
# "the seed used to draw" describe the present.
HISTORY = re.compile(
    r"\b(this session|last session|last run|(an )?earlier version|previous version|previously|no longer|"
    r"used to be|anymore|until recently|formerly)\b|^\s*before:",  # "Before: …" opening a test's story of a bug
    re.IGNORECASE,
)


def docstring_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every module, class and function docstring in a Python file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                for offset, line in enumerate(first.value.value.splitlines()):
                    yield first.value.lineno + offset, line


def history_hits(lines: Iterator[tuple[int, str]], where: Path) -> list[str]:
    """`file:line: 'phrase' in '...context...'` for every history phrase."""
    return [f"{where.relative_to(ROOT)}:{n}: {m.group(0)!r} in {line[max(0, m.start() - 60):m.end() + 60].strip()!r}"
            for n, line in lines for m in HISTORY.finditer(line)]


def _hits_in_markdown(path: Path) -> list[str]:
    return history_hits(enumerate(path.read_text().splitlines(), 1), path)


def test_the_pattern_finds_history_and_passes_present_tense():
    hits = history_hits(iter([(1, "An earlier version of this section said so."), (2, "measured this session"),
                              (3, "the seed used to draw a sample"), (4, "what the store holds now"),
                              (5, "    Before: 03 trained on old episodes."), (6, "the run before: its seed")]), ROOT / "x")
    assert hits == ["x:1: 'An earlier version' in 'An earlier version of this section said so.'",
                    "x:2: 'this session' in 'measured this session'",
                    "x:5: '    Before:' in 'Before: 03 trained on old episodes.'"]


@pytest.mark.parametrize(
    "path",
    [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_markdown_has_no_development_history(path: Path):
    hits = _hits_in_markdown(path)
    assert not hits, "development history in prose (say what the code does; git log keeps the past):\n" + "\n".join(hits)


def test_docstrings_have_no_development_history():
    """The library's, the benchmarks' and the tests' docstrings."""
    files = [p for folder in ("sotopia_pi_lib", "bench", "tests") for p in sorted((ROOT / folder).rglob("*.py"))]
    hits = [h for p in files for h in history_hits(docstring_lines(p), p)]
    assert not hits, "development history in docstrings:\n" + "\n".join(hits)
