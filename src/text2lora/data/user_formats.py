"""User task files: Super-NaturalInstructions v2 task files (``sni``) and JSON Lines (``jsonl``).

* ``sni``: ``Definition``, ``Positive Examples``, ``Instances`` whose ``output`` is a list of references,
  ``Source``, for users with a local copy.
* ``jsonl``: one ``{"input", "output"}`` or ``{"input", "options", "answer"}`` object per line (``answer``: index
  or option text). The description comes from ``description=`` or a header line
  ``{"description": ..., "name"?: ..., "source"?: ..., "license"?: ...}``. Bad lines are skipped, each a
  :class:`LoadProblem`; a task left without instances is not loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from text2lora.data.load_common import LoadProblem, LoadResult, Skip, as_str, sanitize_name
from text2lora.data.task import GENERATION, MULTIPLE_CHOICE, Instance, Task, TaskData

def parse_sni(obj: Any, *, name: str) -> TaskData:
    """A Super-NaturalInstructions v2 task file -> TaskData (generation; outputs are reference lists)."""
    if not isinstance(obj, dict) or "Instances" not in obj:
        raise Skip("not a Super-NaturalInstructions task (no 'Instances')")
    definition = obj.get("Definition")
    definition = " ".join(definition) if isinstance(definition, list) else str(definition or "")
    definition = " ".join(definition.split())
    if not definition:
        raise Skip("task has no Definition")
    instances = []
    for inst in obj["Instances"] if isinstance(obj["Instances"], list) else []:
        if not isinstance(inst, dict):
            continue
        outputs = inst.get("output")
        refs = [outputs] if isinstance(outputs, str) else outputs if isinstance(outputs, list) else []
        refs = [as_str(r).strip() for r in refs if as_str(r).strip()]
        text = as_str(inst.get("input", "")).strip()
        if refs and text:
            instances.append(Instance(input=text, output=refs[0], references=refs if len(refs) > 1 else None))
    if not instances:
        raise Skip("task has no usable instances")
    sources = obj.get("Source") or []
    source = sanitize_name(str(sources[0]).lower()) if isinstance(sources, list) and sources else name
    licenses = obj.get("Instance License") or []
    license_ = str(licenses[0]) if isinstance(licenses, list) and licenses else "unknown"
    task = Task(
        name=name, source=source, definition=definition, metric=GENERATION, descriptions=[definition],
        license=license_, origin="super_natural_instructions",
    )
    return TaskData(task, instances)


def _jsonl_instance(obj: dict[str, Any]) -> Instance:
    if "input" not in obj:
        raise ValueError("missing 'input'")
    text = as_str(obj["input"]).strip()
    if "options" in obj:
        options = obj["options"]
        if not isinstance(options, list) or len(options) < 2:
            raise ValueError("'options' must be a list of at least two strings")
        options = [as_str(o) for o in options]
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
        refs = [as_str(o).strip() for o in output if as_str(o).strip()]
    else:
        refs = [as_str(output).strip()] if output is not None and as_str(output).strip() else []
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
        except (RecursionError, ValueError) as e:  # nested too deep, an integer of too many digits
            result.problems.append(LoadProblem(path, lineno, f"not valid JSON ({'nested too deep' if isinstance(e, RecursionError) else str(e)[:80]})"))
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


