"""Fetching data files: source order, checksums, downloads, and what an offline failure says."""

from __future__ import annotations

import functools
import http.server
import threading
import urllib.error

import pytest

from sotopia_pi_lib.data import fetch as fetch_mod
from sotopia_pi_lib.data.fetch import Source, default_sources, fetch_file, fetch_sotopia_data
from sotopia_pi_lib.data.sources import SOTOPIA_FILES, DataFile
from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.paths import shared_data_dir
from sotopia_pi_lib.store import sha256_file

AGENTS = SOTOPIA_FILES["sotopia/agent_profiles.jsonl"]


@pytest.fixture
def offline(monkeypatch):
    def refuse(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(fetch_mod.urllib.request, "urlopen", refuse)


@pytest.fixture
def source_folder(tmp_path):
    folder = tmp_path / "src"
    (folder / "sotopia").mkdir(parents=True)
    (folder / "sotopia" / "agent_profiles.jsonl").write_bytes(
        (shared_data_dir() / AGENTS.relpath).read_bytes()
    )
    return folder


def test_default_source_order(monkeypatch, tmp_path):
    monkeypatch.setenv("SOTOPIA_PI_DATA", str(tmp_path))
    names = [s.name for s in default_sources()]
    assert names[0] == f"SOTOPIA_PI_DATA={tmp_path}"
    assert names[1].startswith("shared data folder") and names[2] == "public URLs"
    monkeypatch.delenv("SOTOPIA_PI_DATA")
    assert len(default_sources()) == 2


def test_first_source_with_the_file_wins(tmp_path, source_folder, offline):
    dest = tmp_path / "dest"
    empty = Source("empty", tmp_path / "empty")
    path = fetch_file(AGENTS, dest, [empty, Source("mine", source_folder), Source("public URLs", None)])
    assert path == dest / AGENTS.relpath and sha256_file(path) == AGENTS.sha256


def test_checksum_mismatch_is_an_error_naming_file_and_source(tmp_path, source_folder):
    f = source_folder / AGENTS.relpath
    f.write_bytes(f.read_bytes().replace(b"Amara", b"Amaro"))
    with pytest.raises(DataError, match=r"checksum mismatch for sotopia/agent_profiles\.jsonl from mine"):
        fetch_file(AGENTS, tmp_path / "dest", [Source("mine", source_folder)])
    assert not (tmp_path / "dest" / AGENTS.relpath).exists()


def test_no_data_and_no_network_says_what_was_tried(tmp_path, offline):
    with pytest.raises(DataError) as e:
        fetch_sotopia_data(tmp_path / "dest", [Source("SOTOPIA_PI_DATA=/nowhere", tmp_path / "nowhere"),
                                               Source("public URLs", None)])
    msg = str(e.value)
    assert "could not get sotopia/agent_profiles.jsonl" in msg
    assert "SOTOPIA_PI_DATA=/nowhere: not found" in msg
    assert "public URLs: unreachable (https://raw.githubusercontent.com/sotopia-lab" in msg


def test_download_over_http_is_verified(tmp_path, source_folder):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(source_folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/sotopia/agent_profiles.jsonl"
        good = DataFile(AGENTS.relpath, AGENTS.sha256, url, "Apache-2.0")
        path = fetch_file(good, tmp_path / "a", [Source("public URLs", None)])
        assert sha256_file(path) == AGENTS.sha256
        bad = DataFile(AGENTS.relpath, "0" * 64, url, "Apache-2.0")
        with pytest.raises(DataError, match="checksum mismatch.*expected sha256 0000"):
            fetch_file(bad, tmp_path / "b", [Source("public URLs", None)])
    finally:
        server.shutdown()


def test_second_fetch_reads_nothing(tmp_path, offline):
    dest = tmp_path / "dest"
    fetch_sotopia_data(dest, [Source("shared", shared_data_dir())])
    # Every file is now in place and verified: no source is consulted again.
    got = fetch_sotopia_data(dest, [])
    assert set(got) == set(SOTOPIA_FILES)
