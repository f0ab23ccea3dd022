"""The official sotopia environment (`make sotopia`) is found and runs worker scripts."""

from __future__ import annotations

import pytest

from sotopia_pi_lib.errors import BackendError, ConfigError
from sotopia_pi_lib.official import SOTOPIA_VERSION, official_available, run_official, runtime

needs_official = pytest.mark.skipif(not official_available(), reason="run `make sotopia` first")


@needs_official
def test_the_pinned_version_imports_every_module_used():
    out = run_official("version", {})
    assert out["sotopia"] == SOTOPIA_VERSION
    assert out["python"].startswith("3.11.")


def test_missing_environment_names_the_make_target(monkeypatch, tmp_path):
    monkeypatch.setenv("SOTOPIA_PI_SOTOPIA_PYTHON", str(tmp_path / "nope" / "python"))
    assert not official_available()
    with pytest.raises(ConfigError, match="make sotopia"):
        run_official("version", {})


@needs_official
def test_a_failing_script_reports_its_stderr(monkeypatch, tmp_path):
    (tmp_path / "boom.py").write_text("import sys\nsys.stderr.write('kaput')\nsys.exit(3)\n")
    monkeypatch.setattr(runtime, "SCRIPTS", tmp_path)
    with pytest.raises(BackendError, match="(?s)exit 3.*kaput"):
        run_official("boom", {})
