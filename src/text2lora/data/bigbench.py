"""Fetch the pinned BIG-bench sdist with pip and extract its task JSON files (nothing is installed).

* :func:`fetch_sdist` runs ``python -m pip download --no-deps --no-binary :all: bigbench==1.0.0`` into the cache
  (``home()/downloads``), checks the sha256 pinned here and returns the path; a cached file with the right hash
  is reused.
* :func:`extract_tasks` streams the tarball and writes only ``bigbench/benchmark_tasks/**/task.json`` files
  (BIG-bench JSON tasks and the Natural Instructions v1 subtasks) under ``home()/sources/bigbench-1.0.0``.
  Each file is written atomically and a ``.complete`` marker is written last, so a killed run resumes.

The download itself is :func:`text2lora.data.fetch.fetch_pinned` (pip, no install, sha256 checked).
"""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path, PurePosixPath

from text2lora.data.fetch import fetch_pinned
from text2lora.errors import Text2LoraError
from text2lora.paths import atomic_write_bytes, atomic_write_text, home

log = logging.getLogger(__name__)

BIGBENCH_REQUIREMENT = "bigbench==1.0.0"
BIGBENCH_SDIST = "bigbench-1.0.0.tar.gz"
#: sha256 of the PyPI sdist, as observed when this was pinned.
BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
_TASKS_PREFIX = PurePosixPath("bigbench-1.0.0/bigbench/benchmark_tasks")
_COMPLETE = ".complete"

def sources_dir() -> Path:
    return home() / "sources" / "bigbench-1.0.0"


def fetch_sdist(cache_dir: Path | None = None, *, quiet: bool = False) -> Path:
    """Download (once) and verify the BIG-bench sdist; return its path."""
    return fetch_pinned(BIGBENCH_REQUIREMENT, BIGBENCH_SDIST, BIGBENCH_SHA256, binary=False, size_hint="~360 MB",
                        cache_dir=cache_dir, quiet=quiet)


def task_member_path(name: str) -> PurePosixPath | None:
    """The path under ``benchmark_tasks`` of a tar member that is a task JSON file, else None."""
    path = PurePosixPath(name)
    if path.name != "task.json" or path.is_absolute() or ".." in path.parts:
        return None
    try:
        rel = path.relative_to(_TASKS_PREFIX)
    except ValueError:
        return None
    return rel if len(rel.parts) >= 2 else None


class _Progress(io.RawIOBase):
    """A read-only file wrapper that advances a progress bar by the compressed bytes read."""

    def __init__(self, f, bar):
        self._f, self._bar = f, bar

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        self._bar.update(n or 0)
        return n


def extract_tasks(sdist: Path, dest: Path | None = None, *, progress: bool = True) -> Path:
    """Extract the task JSON files of the sdist into ``dest`` (skipped when already complete)."""
    from tqdm import tqdm

    dest = Path(dest) if dest is not None else sources_dir()
    marker = dest / _COMPLETE
    if marker.is_file() and marker.read_text().strip() == BIGBENCH_SHA256:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(sdist, "rb") as raw, tqdm(total=sdist.stat().st_size, unit="B", unit_scale=True,
                                        desc="extracting task files", disable=not progress) as bar:
        stream = io.BufferedReader(_Progress(raw, bar), buffer_size=1 << 20)
        try:
            with tarfile.open(fileobj=stream, mode="r|gz") as tar:
                for member in tar:
                    rel = task_member_path(member.name)
                    if rel is None or not member.isfile():
                        continue
                    out = dest.joinpath(*rel.parts)
                    if out.is_file() and out.stat().st_size == member.size:
                        continue
                    data = tar.extractfile(member).read()
                    out.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_bytes(out, data)
                    written += 1
        except (tarfile.TarError, OSError, EOFError) as e:
            raise Text2LoraError(f"cannot extract {sdist}: {e}") from None
    atomic_write_text(marker, BIGBENCH_SHA256 + "\n")
    log.info("extracted %d task files into %s", written, dest)
    return dest
