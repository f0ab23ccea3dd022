"""Put verified copies of the SOTOPIA data files into the project's `data/` folder.

Sources are tried in a fixed order (the `SOTOPIA_PI_DATA` folder, `../shared/data` beside the
checkout, the public URLs), and every file is checked against its pinned sha256 before it is used,
so a run next year reads the bytes the study was built on, or fails saying why.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..paths import data_dir, shared_data_dir
from ..store import atomic_write_bytes, sha256_file
from .sources import OPTIONAL_FILES, SOTOPIA_FILES, DataFile

DOWNLOAD_TIMEOUT_S = 20


@dataclass(frozen=True)
class Source:
    """A place to look for data files: a local folder or the public URLs."""

    name: str
    folder: Path | None  # None means: download from each file's URL


def default_sources() -> list[Source]:
    sources = []
    env = os.environ.get("SOTOPIA_PI_DATA")
    if env:
        sources.append(Source(f"SOTOPIA_PI_DATA={env}", Path(env)))
    sources.append(Source(f"shared data folder {shared_data_dir()}", shared_data_dir()))
    sources.append(Source("public URLs", None))
    return sources


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r:  # noqa: S310 (pinned https URLs)
        return r.read()


def _from_source(f: DataFile, source: Source, dest: Path) -> str | None:
    """Try one source; return None on success, else a one-line note of what happened."""
    if source.folder is None:
        if not f.url:
            return "no public URL for this file"
        try:
            payload = _download(f.url)
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            return f"unreachable ({f.url}: {getattr(e, 'reason', e)})"
        atomic_write_bytes(dest, payload)
    else:
        path = source.folder / f.relpath
        if not path.is_file():
            return f"not found ({path})"
        tmp = dest.with_name(f".{dest.name}.copy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
    got = sha256_file(dest)
    if got != f.sha256:
        dest.unlink()
        where = f.url if source.folder is None else source.folder / f.relpath
        raise DataError(
            f"checksum mismatch for {f.relpath} from {source.name} ({where}): "
            f"expected sha256 {f.sha256}, got {got}. The file is corrupted or a different version; "
            "replace it with the pinned one (see ../shared/data/README.md)."
        )
    return None


def fetch_file(f: DataFile, dest_dir: Path, sources: list[Source]) -> Path:
    """Make `dest_dir/f.relpath` a verified copy, fetching it if needed."""
    dest = dest_dir / f.relpath
    if dest.is_file() and sha256_file(dest) == f.sha256:
        return dest
    tried = []
    for source in sources:
        note = _from_source(f, source, dest)
        if note is None:
            return dest
        tried.append(f"  - {source.name}: {note}")
    raise DataError(f"could not get {f.relpath}; tried, in order:\n" + "\n".join(tried))


def fetch_sotopia_data(dest_dir: Path | None = None, sources: list[Source] | None = None) -> dict[str, Path]:
    """Fetch every SOTOPIA file; optional files that no source has are skipped, not fatal."""
    dest_dir = dest_dir or data_dir()
    sources = sources if sources is not None else default_sources()
    got = {}
    for rel, f in SOTOPIA_FILES.items():
        try:
            got[rel] = fetch_file(f, dest_dir, sources)
        except DataError as e:
            if rel in OPTIONAL_FILES and "checksum mismatch" not in str(e):
                continue
            raise
    return got


def verified_path(relpath: str, dest_dir: Path | None = None) -> Path:
    """The path of a data file, verified against its checksum; fetches it if it is missing."""
    dest_dir = dest_dir or data_dir()
    f = SOTOPIA_FILES[relpath]
    path = dest_dir / relpath
    if path.is_file():
        got = sha256_file(path)
        if got == f.sha256:
            return path
        raise DataError(
            f"checksum mismatch for {path}: expected sha256 {f.sha256}, got {got}. "
            f"Delete it and run `make data` to fetch a verified copy."
        )
    return fetch_file(f, dest_dir, default_sources())
