"""BIG-bench JSON tasks and the Natural Instructions v1 subtasks that BIG-bench ships (``natural_instructions/``).

* ``bigbench``: a ``task.json`` (``examples`` with a generative ``target`` (string or list) and/or a
  multiple-choice ``target_scores``), or a task directory holding ``task.json`` plus one sub-directory per subtask.
  A task is multiple choice when its ``preferred_score`` is ``multiple_choice_grade`` (or it has no ``target``).
* ``ni1``: the ``Definition``, ``Things to Avoid`` and ``Emphasis/Caution`` sections make the definition; the
  ``Definition`` section alone is the task's own description.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from text2lora.data.load_common import LoadProblem, LoadResult, Skip, as_str, read_json_file, sanitize_name
from text2lora.data.task import GENERATION, MULTIPLE_CHOICE, Instance, Task, TaskData

BIGBENCH_LICENSE = "Apache-2.0 (BIG-bench)"
NI1_DIR = "natural_instructions"

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



def source_family(raw: str) -> str:
    return SOURCE_ALIASES.get(raw, raw)


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
    text = as_str(example.get("input", "")).strip()
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
    refs = [as_str(r).strip() for r in refs if as_str(r).strip()]
    if not refs or not text:
        return None
    return Instance(input=text, output=refs[0], references=refs if len(refs) > 1 else None)


def _examples(obj: Any) -> list[Any]:
    if not isinstance(obj, dict):
        raise Skip("not a task object (expected a JSON object)")
    examples = obj.get("examples", [])
    if not isinstance(examples, list):
        raise Skip("'examples' is not a list")
    return examples


def parse_bigbench(obj: Any, *, name: str, source: str, parent: dict[str, Any] | None = None) -> TaskData:
    """A BIG-bench JSON task object -> TaskData (raises Skip when it has no usable instance)."""
    examples = _examples(obj)
    metric = _bigbench_metric(obj, examples)
    instances = [i for i in (_bigbench_instance(e, metric) for e in examples) if i is not None]
    if not instances:
        raise Skip("task has no usable instances")
    description = str(obj.get("description") or (parent or {}).get("description") or "").strip()
    prefix = str(obj.get("task_prefix") or "").strip()
    definition = f"{description}\n{prefix}".strip() if prefix and prefix not in description else description
    if not description:
        raise Skip("task has no description")
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
        raise Skip("task has no usable instances")
    sections = _ni_sections(str(obj.get("task_prefix") or obj.get("description") or ""))
    own = sections.get("definition", "").strip()
    if not own:
        raise Skip("Natural Instructions task without a 'Definition:' section")
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
        obj = read_json_file(main)
        parent = obj if isinstance(obj, dict) else None
        if family != NI1_DIR and _examples(obj) and (want is None or want(sanitize_name(family), subtask_source(family, ""))):
            yield parse_bigbench(obj, name=sanitize_name(family), source=source_family(f"bigbench.{family}"))
    except Skip as e:
        if not (str(e) == "task has no usable instances" and list_subtasks(task_dir)):
            yield LoadProblem(main, e.line, str(e))
    for sub in order if order is not None else list_subtasks(task_dir):
        name, source = subtask_name(family, sub), subtask_source(family, sub)
        if want is not None and not want(name, source):
            continue
        path = task_dir / sub / "task.json"
        try:
            obj = read_json_file(path)
            if family == NI1_DIR:
                yield parse_ni1(obj, name=name, subtask=sub)
            else:
                yield parse_bigbench(obj, name=name, source=source, parent=parent)
        except Skip as e:
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


