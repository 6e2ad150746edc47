"""Read tasks from the four supported formats into :class:`~text2lora.data.task.TaskData`.

Formats (``FORMATS``):

* ``bigbench``: a BIG-bench ``task.json`` (``examples`` with a generative ``target`` (string or list) and/or a
  multiple-choice ``target_scores``), or a task directory holding ``task.json`` plus one sub-directory per subtask.
  A task is multiple choice when its ``preferred_score`` is ``multiple_choice_grade`` (or it has no ``target``).
* ``ni1``: Natural Instructions v1 as BIG-bench ships it (``natural_instructions/subtaskNNN_*/task.json``): the
  ``Definition``, ``Things to Avoid`` and ``Emphasis/Caution`` sections make the definition; the ``Definition``
  section alone is the task's own description.
* ``sni``: a Super-NaturalInstructions v2 task file (``Definition``, ``Positive Examples``, ``Instances`` whose
  ``output`` is a list of references, ``Source``), for users with a local copy.
* ``jsonl``: user data, one ``{"input", "output"}`` or ``{"input", "options", "answer"}`` object per line
  (``answer``: index or option text). The description comes from ``description=`` or a header line
  ``{"description": ..., "name"?: ..., "source"?: ..., "license"?: ...}``.

The parsers live by format in :mod:`~text2lora.data.bigbench_json` (``bigbench``, ``ni1``) and
:mod:`~text2lora.data.user_formats` (``sni``, ``jsonl``); this module detects a file's format and dispatches.
Entry point: ``load_path(path, format="auto", description=None) -> LoadResult``. Loading never stops at a bad
file: each problem is recorded as a :class:`LoadProblem` naming the file (and line where there is one), and every
valid task still loads. Bad JSONL lines are skipped; a task left without instances is not loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from text2lora.data.bigbench_json import (  # noqa: F401  (the loaders' public names, in one place)
    BIGBENCH_LICENSE,
    NI1_DIR,
    iter_bigbench_dir,
    list_subtasks,
    load_bigbench_dir,
    parse_bigbench,
    parse_ni1,
    source_family,
)
from text2lora.data.load_common import (  # noqa: F401
    FORMATS,
    MAX_DEPTH,
    LoadProblem,
    LoadResult,
    Skip,
    read_json_file,
    sanitize_name,
)
from text2lora.data.user_formats import load_jsonl, parse_sni  # noqa: F401

def detect_format(path: Path, obj: Any = None) -> str | None:
    """The format of a file (``None`` when unknown); ``obj`` is its parsed JSON, if already read."""
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix != ".json" or not isinstance(obj, dict):
        return None
    if "Instances" in obj and "Definition" in obj:
        return "sni"
    if "examples" in obj:
        text = str(obj.get("task_prefix") or obj.get("description") or "")
        return "ni1" if text.lstrip().startswith("Definition:") else "bigbench"
    return None


def _load_file(path: Path, fmt: str, description: str | None) -> LoadResult:
    result = LoadResult()
    if fmt == "jsonl" or (fmt == "auto" and path.suffix == ".jsonl"):
        return load_jsonl(path, description=description)
    try:
        obj = read_json_file(path)
        kind = detect_format(path, obj) if fmt == "auto" else fmt
        stem = path.parent.name if path.stem == "task" else path.stem
        if kind == "sni":
            result.tasks.append(parse_sni(obj, name=f"sni.{sanitize_name(stem)}"))
        elif kind == "ni1":
            result.tasks.append(parse_ni1(obj, name=f"ni.{sanitize_name(stem)}", subtask=stem))
        elif kind == "bigbench":
            name = sanitize_name(stem)
            result.tasks.append(parse_bigbench(obj, name=name, source=source_family(f"bigbench.{name}")))
        else:
            raise Skip(f"unknown task format (expected one of: {', '.join(FORMATS[1:])})")
    except Skip as e:
        result.problems.append(LoadProblem(path, e.line, str(e)))
    return result


def load_path(path: str | os.PathLike, *, format: str = "auto", description: str | None = None) -> LoadResult:
    """Load every task in a file or directory tree; problems are collected, never raised.

    A directory holding ``task.json`` is one BIG-bench task (with subtasks); any other directory is walked:
    sub-directories with a ``task.json`` are BIG-bench tasks, ``*.json`` files are detected by their keys and
    ``*.jsonl`` files are user tasks.
    """
    if format not in FORMATS:
        return LoadResult(problems=[LoadProblem(Path(path), None, f"unknown format {format!r}; "
                                                                  f"use one of {', '.join(FORMATS)}")])
    return _load_any(Path(path), format, description, depth=0)


def _load_any(path: Path, fmt: str, description: str | None, depth: int) -> LoadResult:
    if not path.exists():
        return LoadResult(problems=[LoadProblem(path, None, "no such file or directory")])
    if path.is_file():
        return _load_file(path, fmt, description)
    if (path / "task.json").is_file() and fmt in ("auto", "bigbench", "ni1"):
        return load_bigbench_dir(path)
    result = LoadResult()
    try:
        entries = sorted(path.iterdir())
    except OSError as e:
        result.problems.append(LoadProblem(path, None, f"cannot read directory: {e.strerror or e}"))
        return result
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and depth < MAX_DEPTH:
            result.extend(_load_any(entry, fmt, description, depth + 1))
        elif entry.is_file() and entry.suffix in (".json", ".jsonl"):
            result.extend(_load_file(entry, fmt, description))
    return result

