"""A manifest of a cached model folder: each file's size and sha256, written when the folder is made, checked
before it is used. It lives beside the folder (``<folder>.manifest.json``), not in it: the folder's file list is
part of the evaluation cache's key, which a new file would invalidate.

Sizes are checked on every use (a ``stat`` per file); hashes when ``$TEXT2LORA_VERIFY`` is set, or once for a
folder made before manifests existed (its safetensors files are first checked for truncation against their own
headers, then the manifest is written). A folder that fails is reported, never loaded: a truncated
``model.safetensors`` otherwise surfaces as a traceback deep inside transformers.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path

from text2lora.errors import Text2LoraError
from text2lora.paths import sha256_file, write_json

log = logging.getLogger(__name__)

VERIFY_ENV = "TEXT2LORA_VERIFY"


def manifest_path(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    return folder.with_name(folder.name + ".manifest.json")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def write_manifest(folder: str | os.PathLike, manifest: str | os.PathLike | None = None) -> dict[str, dict]:
    """Record every file of ``folder`` (size and sha256) in ``manifest`` (default :func:`manifest_path`)."""
    folder = Path(folder)
    entries = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
               for p in _files(folder)}
    write_json(manifest or manifest_path(folder), {"files": entries})
    return entries


def safetensors_problem(path: Path) -> str | None:
    """Why the safetensors file ``path`` is damaged (truncated, bad header), or None: its size must be exactly
    what its header says (8 + header length + the end of the last tensor)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                return f"{path.name} is {size} bytes, too short for safetensors"
            (n,) = struct.unpack("<Q", raw)
            if n > min(size, 100 * 2**20):
                return f"{path.name} has a header length of {n} bytes in a {size}-byte file"
            header = json.loads(f.read(n))
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        return f"{path.name} has no readable safetensors header ({type(e).__name__})"
    if size != 8 + n + end:
        return f"{path.name} is {size:,} bytes; its header says {8 + n + end:,}"
    return None


def folder_problem(folder: str | os.PathLike, required: tuple[str, ...] = ("config.json",)) -> str | None:
    """Why the cached folder cannot be used (a missing, resized or, when asked to verify, changed file), or None.

    A folder without a manifest is checked structurally and then given one."""
    folder = Path(folder)
    for name in required:
        if not (folder / name).is_file():
            return f"{name} is missing"
    manifest = manifest_path(folder)
    if not manifest.is_file():
        for path in _files(folder):
            if path.suffix == ".safetensors" and (problem := safetensors_problem(path)):
                return problem
        try:
            write_manifest(folder)
        except (Text2LoraError, OSError) as e:  # a read-only cache is still usable; it is checked again next time
            log.debug("cannot write a manifest into %s: %s", folder, e)
        return None
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        expected = {name: (int(e["size"]), str(e["sha256"])) for name, e in entries.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"its manifest {manifest.name} is unreadable"
    verify = bool(os.environ.get(VERIFY_ENV))
    for name, (size, digest) in expected.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{name} is {actual:,} bytes; it was {size:,} when converted"
        if verify and sha256_file(path) != digest:
            return f"{name} has changed since it was converted (sha256 differs)"
    return None
