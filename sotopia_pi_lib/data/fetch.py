"""Put verified copies of the SOTOPIA data files into the project's `data/` folder.

Sources are tried in a fixed order (the `SOTOPIA_PI_DATA` folder, `../shared/data` beside the
checkout, the public URLs), and every file is checked against its pinned sha256 before it is used,
so a run next year reads the bytes the study was built on, or fails saying why. A file without a
single public copy (`DataFile.rebuilt`) is rebuilt from the public files it was derived from, and the
rebuilt bytes must match the same pinned sha256.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..paths import data_dir, shared_data_dir
from ..store import atomic_write_bytes, sha256_file
from .sources import (
    EPISODE_MODELS,
    HUMAN_EVAL_CSVS,
    HUMAN_EVAL_DIR,
    OFFICIAL_RENDERINGS,
    OPTIONAL_FILES,
    SOTOPIA_FILES,
    DataFile,
    episode_file_url,
)

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


def _csv_pks(payload: bytes) -> list[str]:
    """The distinct `pk` cells of a released human-evaluation CSV, in file order."""
    rows = csv.DictReader(io.StringIO(payload.decode("utf-8"), newline=""))
    return list(dict.fromkeys(row["pk"] for row in rows))


def _episode_models_line(ep: dict, folder: str) -> dict:
    return {"pk": ep["pk"], "study_folder": folder, "models": ep["models"], "tag": ep["tag"],
            "environment_pk": ep["environment"]}


def _official_rendering_line(ep: dict, folder: str) -> dict:
    del folder
    return {"pk": ep["pk"], "environment_pk": ep["environment"], "models": ep["models"], "tag": ep["tag"],
            "rewards_prompt": ep["rewards_prompt"]}


# Files with no single public copy, each a projection of the 154 public per-episode files.
DERIVED = {EPISODE_MODELS: _episode_models_line, OFFICIAL_RENDERINGS: _official_rendering_line}


def rebuild_derived(relpath: str, csv_payloads: dict[str, bytes], download=None) -> bytes:
    """A derived file (DERIVED) from the public per-episode files of SOTOPIA's human-evaluation app.

    `csv_payloads` maps each released CSV's file name to its (verified) bytes: their pks say which
    per-episode files to read, the CSV says which study folder. One line per episode, sorted by pk, as
    `json.dumps` writes the projection (the pinned sha256 is of exactly these bytes, so a rebuilt file
    is verified like a downloaded one).
    """
    download, project = download or _download, DERIVED[relpath]
    lines = []
    for name, folder in HUMAN_EVAL_CSVS.values():
        for pk in _csv_pks(csv_payloads[name]):
            lines.append(project(json.loads(download(episode_file_url(folder, pk))), folder))
    lines.sort(key=lambda d: d["pk"])
    return "".join(json.dumps(d) + "\n" for d in lines).encode("utf-8")


def _public_copy(f: DataFile, dest_dir: Path, sources: list[Source]) -> bytes:
    if not f.rebuilt:
        return _download(f.url)
    csvs = {name: fetch_file(SOTOPIA_FILES[f"{HUMAN_EVAL_DIR}/{name}"], dest_dir, sources).read_bytes()
            for name, _ in HUMAN_EVAL_CSVS.values()}
    return rebuild_derived(f.relpath, csvs)


def _from_source(f: DataFile, source: Source, dest_dir: Path, sources: list[Source]) -> str | None:
    """Try one source; return None on success, else a one-line note of what happened."""
    dest = dest_dir / f.relpath
    if source.folder is None:
        if not f.url and not f.rebuilt:
            return "no public URL for this file"
        try:
            payload = _public_copy(f, dest_dir, sources)
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            where = f.url or "the public per-episode files it is built from"
            return f"unreachable ({where}: {getattr(e, 'reason', e)})"
        except (KeyError, ValueError) as e:
            return f"could not be rebuilt from the public per-episode files ({type(e).__name__}: {e})"
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
        where = (f.url or "rebuilt from the public per-episode files") if source.folder is None else source.folder / f.relpath
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
        note = _from_source(f, source, dest_dir, sources)
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
