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

Entry point: ``load_path(path, format="auto", description=None) -> LoadResult``. Loading never stops at a bad
file: each problem is recorded as a :class:`LoadProblem` naming the file (and line where there is one), and every
valid task still loads. Bad JSONL lines are skipped; a task left without instances is not loaded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text2lora.data.task import GENERATION, MULTIPLE_CHOICE, Instance, Task, TaskData

FORMATS = ("auto", "bigbench", "ni1", "sni", "jsonl")
BIGBENCH_LICENSE = "Apache-2.0 (BIG-bench)"
NI1_DIR = "natural_instructions"
_MAX_DEPTH = 6

# BIG-bench / NI task families that are built on one underlying dataset (decontamination groups).
SOURCE_ALIASES = {
    "bigbench.simple_arithmetic_json": "bigbench.simple_arithmetic",
    "bigbench.simple_arithmetic_json_multiple_choice": "bigbench.simple_arithmetic",
    "bigbench.simple_arithmetic_json_subtasks": "bigbench.simple_arithmetic",
    "bigbench.simple_arithmetic_multiple_targets_json": "bigbench.simple_arithmetic",
    "bigbench.entailed_polarity_hindi": "bigbench.entailed_polarity",
    "bigbench.international_phonetic_alphabet_nli": "bigbench.international_phonetic_alphabet",
    "bigbench.international_phonetic_alphabet_transliterate": "bigbench.international_phonetic_alphabet",
    "bigbench.semantic_parsing_in_context_sparc": "spider",
    "bigbench.semantic_parsing_spider": "spider",
    "bigbench.parsinlu_qa": "bigbench.parsinlu",
    "bigbench.parsinlu_reading_comprehension": "bigbench.parsinlu",
    "bigbench.bbq_lite_json": "bbq",
    "bigbench.bbq_lite": "bbq",
}
# Natural Instructions v1 subtask names start with their dataset (subtask003_mctaco_...); a few are spelled oddly.
NI1_FAMILY_ALIASES = {"essential": "essential_terms", "miscellaneous": "ni_misc", "miscellaenous": "ni_misc",
                      "misc": "ni_misc"}


@dataclass
class LoadProblem:
    """Why a file, a line or a task could not be used."""

    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.message}"


@dataclass
class LoadResult:
    tasks: list[TaskData] = field(default_factory=list)
    problems: list[LoadProblem] = field(default_factory=list)

    def extend(self, other: LoadResult) -> None:
        self.tasks.extend(other.tasks)
        self.problems.extend(other.problems)


class _Skip(Exception):
    """Raised inside a loader: this file or task cannot be used (becomes a LoadProblem)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def sanitize_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", text.strip()).strip("._-")
    return name or "task"


def source_family(raw: str) -> str:
    return SOURCE_ALIASES.get(raw, raw)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _Skip(f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _Skip(f"not valid JSON ({e.msg}, column {e.colno})", line=e.lineno) from None


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# ----------------------------------------------------------------------------------------------- BIG-bench / NI v1
def _bigbench_metric(obj: dict[str, Any], examples: list[Any]) -> str:
    has_target = any(isinstance(e, dict) and "target" in e for e in examples)
    has_scores = any(isinstance(e, dict) and "target_scores" in e for e in examples)
    if has_scores and (obj.get("preferred_score") == "multiple_choice_grade" or not has_target):
        return MULTIPLE_CHOICE
    return GENERATION


def _bigbench_instance(example: Any, metric: str) -> Instance | None:
    """One BIG-bench example, or None when it has nothing usable for ``metric``."""
    if not isinstance(example, dict):
        return None
    text = _as_str(example.get("input", "")).strip()
    if metric == MULTIPLE_CHOICE:
        scores = example.get("target_scores")
        if not isinstance(scores, dict) or len(scores) < 2:
            return None
        options = [str(k) for k in scores]
        values = [float(v) if isinstance(v, (int, float)) else 0.0 for v in scores.values()]
        best = max(values)
        if best <= 0 or len(set(options)) != len(options):
            return None
        return Instance.choice(text, options, values.index(best))
    target = example.get("target")
    refs = [target] if isinstance(target, str) else target if isinstance(target, list) else []
    refs = [_as_str(r).strip() for r in refs if _as_str(r).strip()]
    if not refs or not text:
        return None
    return Instance(input=text, output=refs[0], references=refs if len(refs) > 1 else None)


def _examples(obj: Any) -> list[Any]:
    if not isinstance(obj, dict):
        raise _Skip("not a task object (expected a JSON object)")
    examples = obj.get("examples", [])
    if not isinstance(examples, list):
        raise _Skip("'examples' is not a list")
    return examples


def parse_bigbench(obj: Any, *, name: str, source: str, parent: dict[str, Any] | None = None) -> TaskData:
    """A BIG-bench JSON task object -> TaskData (raises _Skip when it has no usable instance)."""
    examples = _examples(obj)
    metric = _bigbench_metric(obj, examples)
    instances = [i for i in (_bigbench_instance(e, metric) for e in examples) if i is not None]
    if not instances:
        raise _Skip("task has no usable instances")
    description = str(obj.get("description") or (parent or {}).get("description") or "").strip()
    prefix = str(obj.get("task_prefix") or "").strip()
    definition = f"{description}\n{prefix}".strip() if prefix and prefix not in description else description
    if not description:
        raise _Skip("task has no description")
    task = Task(
        name=name, source=source, definition=definition, metric=metric, descriptions=[description],
        license=BIGBENCH_LICENSE, origin="bigbench",
    )
    return TaskData(task, instances)


_NI_SECTIONS = re.compile(r"(Definition|Things to Avoid|Emphasis/Caution|Prompt)\s*:", re.I)


def _ni_sections(text: str) -> dict[str, str]:
    parts = _NI_SECTIONS.split(text)
    return {parts[i].lower(): " ".join(parts[i + 1].split()) for i in range(1, len(parts) - 1, 2)}


def parse_ni1(obj: Any, *, name: str, subtask: str) -> TaskData:
    """A Natural Instructions v1 subtask (as shipped in BIG-bench) -> TaskData."""
    examples = _examples(obj)
    instances = [i for i in (_bigbench_instance(e, GENERATION) for e in examples) if i is not None]
    if not instances:
        raise _Skip("task has no usable instances")
    sections = _ni_sections(str(obj.get("task_prefix") or obj.get("description") or ""))
    own = sections.get("definition", "").strip()
    if not own:
        raise _Skip("Natural Instructions task without a 'Definition:' section")
    lines = [f"Definition: {own}"]
    for key, title in (("things to avoid", "Things to Avoid"), ("emphasis/caution", "Emphasis/Caution")):
        value = sections.get(key, "").strip(" -")
        if value:
            lines.append(f"{title}: {value}")
    if sections.get("prompt"):
        lines.append(f"Prompt: {sections['prompt']}")
    family = subtask_source(NI1_DIR, subtask)
    task = Task(
        name=name, source=family, definition="\n".join(lines), metric=GENERATION, descriptions=[own],
        license=BIGBENCH_LICENSE + "; Natural Instructions v1", origin="natural_instructions_v1",
    )
    return TaskData(task, instances)


def subtask_name(family: str, sub: str) -> str:
    """The library name of a BIG-bench subtask (``family.sub``) or Natural Instructions subtask (``ni.sub``)."""
    return f"ni.{sanitize_name(sub)}" if family == NI1_DIR else f"{sanitize_name(family)}.{sanitize_name(sub)}"


def subtask_source(family: str, sub: str) -> str:
    if family == NI1_DIR:
        match = re.match(r"subtask\d+_([a-z]+)", sub)
        return NI1_FAMILY_ALIASES.get(match.group(1), match.group(1)) if match else sanitize_name(sub)
    return source_family(f"bigbench.{family}")


def iter_bigbench_dir(
    task_dir: Path,
    *,
    order: list[str] | None = None,
    want: Callable[[str, str], bool] | None = None,
) -> Iterator[TaskData | LoadProblem]:
    """Lazily load a BIG-bench task directory: its own ``task.json``, then ``<subtask>/task.json`` files.

    ``order`` gives the subtask directory names to visit (default: all, sorted); ``want(name, source)`` is asked
    before a subtask file is read, so callers can skip loading tasks they would not keep.
    """
    family = task_dir.name
    main = task_dir / "task.json"
    parent: dict[str, Any] | None = None
    try:
        obj = _read_json(main)
        parent = obj if isinstance(obj, dict) else None
        if family != NI1_DIR and _examples(obj) and (want is None or want(sanitize_name(family), subtask_source(family, ""))):
            yield parse_bigbench(obj, name=sanitize_name(family), source=source_family(f"bigbench.{family}"))
    except _Skip as e:
        if not (str(e) == "task has no usable instances" and list_subtasks(task_dir)):
            yield LoadProblem(main, e.line, str(e))
    for sub in order if order is not None else list_subtasks(task_dir):
        name, source = subtask_name(family, sub), subtask_source(family, sub)
        if want is not None and not want(name, source):
            continue
        path = task_dir / sub / "task.json"
        try:
            obj = _read_json(path)
            if family == NI1_DIR:
                yield parse_ni1(obj, name=name, subtask=sub)
            else:
                yield parse_bigbench(obj, name=name, source=source, parent=parent)
        except _Skip as e:
            yield LoadProblem(path, e.line, str(e))


def list_subtasks(task_dir: Path) -> list[str]:
    """Names of the sub-directories that hold a ``task.json``."""
    try:
        return sorted(p.name for p in task_dir.iterdir() if p.is_dir() and (p / "task.json").is_file())
    except OSError:
        return []


def load_bigbench_dir(task_dir: Path) -> LoadResult:
    """A BIG-bench task directory with its subtasks, all loaded."""
    result = LoadResult()
    try:
        list(Path(task_dir).iterdir())
    except OSError as e:
        result.problems.append(LoadProblem(task_dir, None, f"cannot read directory: {e.strerror or e}"))
        return result
    for item in iter_bigbench_dir(task_dir):
        (result.problems if isinstance(item, LoadProblem) else result.tasks).append(item)
    return result


# ----------------------------------------------------------------------------------------------------- SNI v2
def parse_sni(obj: Any, *, name: str) -> TaskData:
    """A Super-NaturalInstructions v2 task file -> TaskData (generation; outputs are reference lists)."""
    if not isinstance(obj, dict) or "Instances" not in obj:
        raise _Skip("not a Super-NaturalInstructions task (no 'Instances')")
    definition = obj.get("Definition")
    definition = " ".join(definition) if isinstance(definition, list) else str(definition or "")
    definition = " ".join(definition.split())
    if not definition:
        raise _Skip("task has no Definition")
    instances = []
    for inst in obj["Instances"] if isinstance(obj["Instances"], list) else []:
        if not isinstance(inst, dict):
            continue
        outputs = inst.get("output")
        refs = [outputs] if isinstance(outputs, str) else outputs if isinstance(outputs, list) else []
        refs = [_as_str(r).strip() for r in refs if _as_str(r).strip()]
        text = _as_str(inst.get("input", "")).strip()
        if refs and text:
            instances.append(Instance(input=text, output=refs[0], references=refs if len(refs) > 1 else None))
    if not instances:
        raise _Skip("task has no usable instances")
    sources = obj.get("Source") or []
    source = sanitize_name(str(sources[0]).lower()) if isinstance(sources, list) and sources else name
    licenses = obj.get("Instance License") or []
    license_ = str(licenses[0]) if isinstance(licenses, list) and licenses else "unknown"
    task = Task(
        name=name, source=source, definition=definition, metric=GENERATION, descriptions=[definition],
        license=license_, origin="super_natural_instructions",
    )
    return TaskData(task, instances)


# ------------------------------------------------------------------------------------------------------ JSONL
def _jsonl_instance(obj: dict[str, Any]) -> Instance:
    if "input" not in obj:
        raise ValueError("missing 'input'")
    text = _as_str(obj["input"]).strip()
    if "options" in obj:
        options = obj["options"]
        if not isinstance(options, list) or len(options) < 2:
            raise ValueError("'options' must be a list of at least two strings")
        options = [_as_str(o) for o in options]
        answer = obj.get("answer")
        if isinstance(answer, str):
            if answer not in options:
                raise ValueError(f"answer {answer!r} is not one of the options")
            answer = options.index(answer)
        if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(options):
            raise ValueError("'answer' must be an option index or an option's text")
        return Instance.choice(text, options, answer)
    output = obj.get("output")
    if isinstance(output, list):
        refs = [_as_str(o).strip() for o in output if _as_str(o).strip()]
    else:
        refs = [_as_str(output).strip()] if output is not None and _as_str(output).strip() else []
    if not refs:
        raise ValueError("missing or empty 'output' (or 'options' + 'answer')")
    return Instance(input=text, output=refs[0], references=refs if len(refs) > 1 else None)


def load_jsonl(path: Path, *, description: str | None = None) -> LoadResult:
    """A user JSONL task: bad lines become problems (with line numbers) and are skipped."""
    result = LoadResult()
    header: dict[str, Any] = {}
    instances: list[Instance] = []
    kind: str | None = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        result.problems.append(LoadProblem(path, None, f"cannot read: {getattr(e, 'strerror', None) or e}"))
        return result
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            result.problems.append(LoadProblem(path, lineno, f"not valid JSON ({e.msg}, column {e.colno})"))
            continue
        if not isinstance(obj, dict):
            result.problems.append(LoadProblem(path, lineno, "expected a JSON object"))
            continue
        if "input" not in obj and "description" in obj and not instances and not header:
            header = obj
            continue
        try:
            inst = _jsonl_instance(obj)
        except ValueError as e:
            result.problems.append(LoadProblem(path, lineno, str(e)))
            continue
        this_kind = MULTIPLE_CHOICE if inst.is_multiple_choice else GENERATION
        if kind is not None and this_kind != kind:
            result.problems.append(LoadProblem(path, lineno, f"a {this_kind} line in a {kind} task"))
            continue
        kind = this_kind
        instances.append(inst)
    desc = (description or str(header.get("description") or "")).strip()
    name = sanitize_name(str(header.get("name") or path.stem))
    if not desc:
        result.problems.append(LoadProblem(path, None, "no description: pass --description or add a header line "
                                                       '{"description": "..."}'))
    elif not instances:
        result.problems.append(LoadProblem(path, None, "task has no usable instances"))
    else:
        task = Task(
            name=name, source=sanitize_name(str(header.get("source") or name)), definition=desc,
            metric=kind or GENERATION, descriptions=[desc], license=str(header.get("license") or "user-provided"),
            origin="jsonl",
        )
        result.tasks.append(TaskData(task, instances))
    return result


# ----------------------------------------------------------------------------------------------- dispatching
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
        obj = _read_json(path)
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
            raise _Skip(f"unknown task format (expected one of: {', '.join(FORMATS[1:])})")
    except _Skip as e:
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
        if entry.is_dir() and depth < _MAX_DEPTH:
            result.extend(_load_any(entry, fmt, description, depth + 1))
        elif entry.is_file() and entry.suffix in (".json", ".jsonl"):
            result.extend(_load_file(entry, fmt, description))
    return result
