"""Training's files without training: which checkpoint a resume may use, and the adapter swap."""

from __future__ import annotations

import hashlib
import json
import threading
import time

from sotopia_pi_lib.pi.train import (
    COMPLETE,
    canonical_adapter_config,
    last_complete_checkpoint,
    publish_adapter,
)


def test_only_a_checkpoint_whose_save_completed_is_resumed(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"w")
        if complete:
            (folder / COMPLETE).write_text("{}")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert not (tmp_path / "checkpoint-6").exists()  # the torn save is gone: rotation can never prefer it
    assert last_complete_checkpoint(tmp_path / "missing") is None


def _adapter(folder, weights: bytes):
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_the_adapter_swap_never_leaves_a_moment_without_an_adapter(tmp_path):
    """The link always names a whole adapter, and the one it named before stays whole until the next
    publish, so a reader that resolved the link just before a swap still finds its files. (Publishes
    are spaced a little, as real ones are minutes apart: a reader's stat, preempted inside the kernel
    on a loaded machine, could otherwise outlast two publishes in a row.)"""
    link = tmp_path / "adapter"
    publish_adapter(_adapter(tmp_path / "p0", b"v0"), link)
    seen_missing, stop = [], threading.Event()

    def whole(folder):
        return (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()

    def reader():
        while not stop.is_set():
            if not whole(link):
                seen_missing.append(1)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(1, 60):
        before = link.resolve()
        publish_adapter(_adapter(tmp_path / f"p{i}", f"v{i}".encode()), link)
        assert whole(link) and whole(before) and link.resolve() != before
        time.sleep(0.01)
    stop.set()
    thread.join()
    assert seen_missing == []
    assert (link / "adapter_model.safetensors").read_bytes() == b"v59"
    previous = f"adapter-{hashlib.sha256(b'v58').hexdigest()[:16]}"
    kept = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("adapter"))
    # the version before stays for readers that resolved the link just before the swap; older ones go
    assert kept == sorted(["adapter", link.resolve().name, previous])


def test_a_folder_from_the_older_layout_is_replaced_by_the_link(tmp_path):
    link = _adapter(tmp_path / "adapter", b"old")
    publish_adapter(_adapter(tmp_path / "new", b"new"), link)
    assert link.is_symlink() and (link / "adapter_model.safetensors").read_bytes() == b"new"


def test_the_adapter_config_is_written_the_same_whatever_the_set_order(tmp_path):
    """peft writes target_modules from a set: two processes gave ["v_proj", "q_proj"] and the reverse,
    so the same training got two content hashes (and so new episode ids and cache keys)."""
    files = []
    for order in (["v_proj", "q_proj"], ["q_proj", "v_proj"]):
        folder = tmp_path / "-".join(order)
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"target_modules": order, "r": 8}))
        canonical_adapter_config(folder)
        files.append((folder / "adapter_config.json").read_bytes())
    assert files[0] == files[1] and json.loads(files[0])["target_modules"] == ["q_proj", "v_proj"]
