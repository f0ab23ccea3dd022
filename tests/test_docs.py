"""The docs point at things that exist: every test docs/fidelity.md names is defined."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_test_named_in_the_fidelity_table_exists():
    text = (ROOT / "docs" / "fidelity.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)((?:::\w+)?)`", text)
    assert len(named) > 20
    for path, test in named:
        source = (ROOT / path).read_text()
        if test:
            assert re.search(rf"^def {test[2:]}\(", source, re.M), f"docs/fidelity.md names {path}{test}"
    # the shorthand `::name` after a full name refers to the same file
    for match in re.finditer(r"`(tests/[\w/]+\.py)::\w+`(?:, `::(\w+)`)+", text):
        source = (ROOT / match.group(1)).read_text()
        for extra in re.findall(r"`::(\w+)`", match.group(0)):
            assert re.search(rf"^def {extra}\(", source, re.M), f"docs/fidelity.md names {match.group(1)}::{extra}"
