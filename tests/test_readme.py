"""The README stays a user's page: short, its links alive, and no benchmark number typed by hand (a
number on a line about speed must be one the benchmarks wrote into docs/performance.md)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PERFORMANCE = ROOT / "docs" / "performance.md"
SPEED = re.compile(r"tokens/s|turns/s|\bratio\b|\bR[12]\b|\d×|\bspeed|faster|slower|\bbench/", re.IGNORECASE)
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")


def speed_numbers(text: str) -> list[tuple[int, str]]:
    """(line number, number) for every number on a line that speaks of speed or a benchmark."""
    return [(i, n) for i, line in enumerate(text.splitlines(), 1) if SPEED.search(line) for n in NUMBER.findall(line)]


def test_the_readme_is_short_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    targets = re.findall(r"\]\(((?!https?:)[^)#]+)", text)
    assert "docs/fidelity.md" in targets and "docs/performance.md" in targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert missing == [], f"README links to missing files: {missing}"


def test_readme_speed_numbers_come_from_the_generated_performance_page():
    generated = set(NUMBER.findall(PERFORMANCE.read_text())) if PERFORMANCE.exists() else set()
    typed = [f"README.md:{i}: {n}" for i, n in speed_numbers(README.read_text()) if n not in generated]
    assert typed == [], "benchmark numbers typed by hand (make bench writes docs/performance.md):\n" + "\n".join(typed)


def test_the_number_guard_catches_a_typed_number():
    assert speed_numbers("the engine runs 4.6× faster than generate\nMMLU has 57 subjects") == [(1, "4.6")]
