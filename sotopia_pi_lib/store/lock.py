"""One writer per run: an exclusive lock on `results/<run>/`.

Two `make all` on one run would both play every episode (double API spend), interleave JSONL writes,
share training checkpoints and race on the manifest. So a writer (the pipeline runner, or a stage
notebook opened on its own) takes `fcntl.flock` on `results/<run>/.lock` and records in it who holds
it (pid, host, start time, command); a second writer stops at once with that in the message. The
kernel releases a flock when its holder dies, however it dies, so a lock left by a killed process is
taken over safely by the next writer, with no stale-file guessing.

The runner executes each stage notebook in a child kernel process. It passes its lock token to the
children in `SOTOPIA_PI_RUN_LOCK`; a stage opened with the holder's token works under the holder's lock.
Each such child also holds a lock of its own on `.lock.stage-<pid>` while it lives, and a new writer
waits for those to go before it starts: a kernel orphaned by a killed runner (it exits within a
second, see ipykernel's parent poller) can never write beside the next run. A notebook opened in
JupyterLab on a run that another process is writing is refused (not queued): the message names the
holder. Locks are advisory and need a local file system (flock on some network file systems is not
shared between machines).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import SotopiaPiError
from ..redact import scrub_text

log = logging.getLogger(__name__)
LOCK_NAME = ".lock"
STAGE_PREFIX = ".lock.stage-"
TOKEN_ENV = "SOTOPIA_PI_RUN_LOCK"
CHILD_WAIT_S = 30.0  # how long a new writer waits for an orphaned stage kernel of a dead run to exit


class RunLocked(SotopiaPiError):
    """Another process is writing this run."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started: str
    command: str
    token: str = ""

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started} ({self.command})"

    def alive(self) -> bool | None:
        """Whether the holding process still runs (None: it runs on another host, unknown)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def read_holder(path: Path) -> Holder | None:
    """Who last took the lock file at `path` (None if nobody, or unreadable). Reading takes no lock."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Holder(**{k: data[k] for k in ("pid", "host", "started", "command")}, token=data.get("token", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def lock_path(root: Path) -> Path:
    return Path(root) / LOCK_NAME


def current_holder(root: Path) -> Holder | None:
    """The live holder of a run's lock, judged without touching the lock (for read-only `--status`)."""
    holder = read_holder(lock_path(root))
    return holder if holder is not None and holder.alive() is not False else None


class RunLock:
    """The exclusive lock on one run folder, held from `acquire()` until `release()` or process exit."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = lock_path(self.root)
        self.token = ""
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._refusal() from None
        previous = read_holder(self.path)
        if previous is not None and previous.pid != os.getpid():
            log.warning("%s: taking over the lock last held by %s (no longer running)", self.root,
                        previous.describe())
        self.token = uuid.uuid4().hex
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
                  "started": datetime.now(UTC).isoformat(timespec="seconds"), "token": self.token}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        try:
            _wait_for_stage_kernels(self.root)
        except BaseException:
            self.release()
            raise
        return self

    def _refusal(self) -> RunLocked:
        holder = read_holder(self.path)
        who = holder.describe() if holder else "another process"
        return RunLocked(
            f"run {self.root} is being written by {who}; a second writer would repeat its work and "
            "interleave its files. Wait for it to finish (or stop it), or use another --run. "
            "If it is a notebook kernel in JupyterLab, finish its stage or restart that kernel."
        )

    def release(self) -> None:
        if self._fd is not None:
            _sweep_stage_files(self.root)
            os.ftruncate(self._fd, 0)  # free: the next writer sees no holder to take over from
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None
            _held.pop(self.root.resolve(), None)


def _command() -> str:
    return scrub_text(" ".join(Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv)))[:200]


def _wait_for_stage_kernels(root: Path) -> None:
    """Wait until no stage kernel of an earlier (dead) run still holds its stage lock."""
    deadline = time.monotonic() + CHILD_WAIT_S
    for path in sorted(root.glob(STAGE_PREFIX + "*")):
        _remove_when_exited(root, path, deadline)


def _sweep_stage_files(root: Path) -> None:
    """Remove the stage lock files of kernels that have exited (a live kernel's stays): the holder
    does this before it lets go, so a finished run folder keeps no `.lock.stage-*` files."""
    for path in root.glob(STAGE_PREFIX + "*"):
        _remove_when_exited(root, path, None)


def _remove_when_exited(root: Path, path: Path, deadline: float | None) -> bool:
    """Remove a stage lock file once its kernel has exited (its flock is free); whether it was removed.
    Without a deadline a live kernel's file stays at once; with one, wait for the kernel until then."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is None:
                    return False
                if time.monotonic() > deadline:
                    holder = read_holder(path)
                    raise RunLocked(f"run {root}: a stage kernel of an earlier run "
                                    f"({holder.describe() if holder else path.name}) is still running; "
                                    "stop it and try again") from None
                time.sleep(0.2)
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


_held: dict[Path, RunLock] = {}
_stage_fds: dict[Path, int] = {}


def acquire_run_lock(root: Path) -> RunLock:
    """The lock on `root` for this process: taken once, reused by later calls (a notebook kernel that
    opens a stage again)."""
    key = Path(root).resolve()
    lock = _held.get(key)
    if lock is None or not lock.held:
        lock = RunLock(root).acquire()
        _held[key] = lock
    return lock


def enter_stage(root: Path) -> RunLock | None:
    """What a stage notebook does first: work under the runner's lock when started by it (the holder's
    token in SOTOPIA_PI_RUN_LOCK), else take the run's lock itself (returned, to release at the end)."""
    token = os.environ.get(TOKEN_ENV, "")
    holder = read_holder(lock_path(root))
    if token and holder is not None and holder.token == token and holder.alive():
        _hold_stage_lock(Path(root), holder)
        return None
    return acquire_run_lock(root)


def _hold_stage_lock(root: Path, parent: Holder) -> None:
    """A runner's child holds `.lock.stage-<pid>` for its lifetime (see the module docstring)."""
    path = root / f"{STAGE_PREFIX}{os.getpid()}"
    if path in _stage_fds:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": f"stage kernel of pid {parent.pid}",
            "started": datetime.now(UTC).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _stage_fds[path] = fd


def child_environment(lock: RunLock) -> dict[str, str]:
    """The environment entry that lets the runner's stage kernels work under its lock."""
    return {TOKEN_ENV: lock.token}
