"""The score cache: one JSON file per (method, task, description), keyed by a sha256 of everything that
changes the score, so a rerun computes only what changed.

The key covers the method (name, kind and the content hash of its adapter or checkpoint files), the base model
(name and its files' sizes and modification times), the task's scored instances, the prompt (variant,
description text, ICL examples, token budget) and, for generation tasks, the decoding length. Files live at
``<root>/<key[:2]>/<key>.json``, written atomically; an unreadable file is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from text2lora.paths import home, sha256_file, write_json

log = logging.getLogger(__name__)

#: Bump when scoring itself changes (metric definitions, prompt format): every cached score is then stale.
CACHE_VERSION = 1



def default_cache_dir() -> Path:
    return home() / "eval-cache"


def hash_files(directory: Path, names: tuple[str, ...]) -> dict[str, str]:
    """``{name: sha256}`` for the named files of a directory that exist."""
    return {n: sha256_file(directory / n) for n in names if (directory / n).is_file()}


def stat_files(directory: str | os.PathLike) -> list[tuple[str, int, int]]:
    """(name, size, mtime) of a directory's files: a cheap fingerprint for large model weights."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir() if p.is_file())


def cache_key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"v": CACHE_VERSION, **fields}, sort_keys=True).encode()).hexdigest()


class ScoreCache:
    """Get and put score records by key; ``root=None`` disables it (every get misses, puts are dropped)."""

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = Path(root) if root is not None else None
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        record = None
        if self.root is not None:
            path = self._path(key)
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                record = None
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                log.warning("ignoring unreadable cache entry %s (%s)", path, e)
                record = None
            if record is not None and record.get("key") != key:
                record = None
        if record is None:
            self.misses += 1
        else:
            self.hits += 1
        return record

    def put(self, key: str, record: dict[str, Any]) -> None:
        if self.root is not None:
            write_json(self._path(key), {**record, "key": key})
