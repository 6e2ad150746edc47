"""OpenAI's evals registry as a task source, read from the pinned ``evals`` wheel (never installed).

* :func:`fetch_wheel` runs ``pip download --no-deps --only-binary :all: evals==3.0.1.post1`` into the cache
  (``home()/downloads``), checks the sha256 pinned here and returns the path; a cached file with the right hash is
  reused, a corrupt or truncated one is fetched again and refused if it still does not match.
* :func:`load_registry` reads the wheel as a zip file: the specs ``evals/registry/evals/*.yaml`` (class, args, which
  ``samples_jsonl``) and the samples ``evals/registry/data/<set>/*.jsonl`` (chat messages with an ``ideal`` answer).

What is kept: eval sets of the deterministic classes (``Match``, ``Includes``, ``FuzzyMatch``) whose samples are in
the wheel. Every other set is reported as dropped, with its reason (model-graded, an agentic or interactive eval, data
on a hub, ...). Within a set:

* the *instruction* is the system text the samples share (the leading system messages, or their common prefix when
  each sample puts its own question after it); it is the task's own description and is stripped from the input.
  A generic one ("You are a helpful assistant.") is no instruction: the spec's ``description`` is used instead;
* few-shot turns (system messages named ``example_user`` / ``example_assistant``, or user/assistant pairs before
  the last user turn) are left out of the input: the library's prompts carry no examples of their own;
* the input is the last user message; samples whose turns do not alternate, or end with the assistant, are skipped;
* ``ideal`` (a string or a list of acceptable strings) gives the output and its references.

A malformed line (not JSON, wrong types, no ``ideal``) is skipped with one warning per file naming the file and its
first bad lines; a malformed spec file is skipped with a warning; every valid set still loads.

Families: sets that share a spec file, a data folder or (nearly) the same instruction are one source family, so
that e.g. the lexicon sets of several languages, written from one template, stay on one side of the split.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from text2lora.data.fetch import fetch_pinned
from text2lora.data.load_common import LoadProblem, sanitize_name
from text2lora.data.task import GENERATION, Instance, Task, TaskData
from text2lora.errors import Text2LoraError

log = logging.getLogger(__name__)

EVALS_REQUIREMENT = "evals==3.0.1.post1"
EVALS_WHEEL = "evals-3.0.1.post1-py3-none-any.whl"
#: sha256 of the PyPI wheel, as observed when this was pinned.
EVALS_SHA256 = "0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78"
EVALS_LICENSE = "MIT (openai/evals registry)"
ORIGIN = "openai_evals"
SPECS_DIR = "evals/registry/evals/"
DATA_DIR = "evals/registry/data/"

DETERMINISTIC = {
    "evals.elsuite.basic.match:Match": "Match",
    "evals.elsuite.basic.includes:Includes": "Includes",
    "evals.elsuite.basic.fuzzy_match:FuzzyMatch": "FuzzyMatch",
}
MIN_INSTRUCTION_WORDS = 6
"""A shared system text shorter than this (or a stock persona line) is not a task instruction."""
_GENERIC = re.compile(r"^(you are (a|an) (helpful|smart|useful)[a-z ]*(assistant|ai|bot)[^.]*\.?)$", re.I)
_FEWSHOT_NAMES = {"example_user", "example_assistant"}
MAX_BAD_LINES_LISTED = 3
SAMPLE_LINES_FOR_PREFIX = 200


def fetch_wheel(cache_dir: Path | None = None, *, quiet: bool = False) -> Path:
    """Download (once) and verify the evals wheel; return its path."""
    return fetch_pinned(EVALS_REQUIREMENT, EVALS_WHEEL, EVALS_SHA256, binary=True, size_hint="~46 MB",
                        cache_dir=cache_dir, quiet=quiet)


@dataclass
class EvalSet:
    """One concrete eval set of the registry (a spec entry with a class)."""

    name: str
    """The library task name (``evals.<base name>``)."""
    spec_file: str
    cls: str
    samples: str | None
    """Path of its samples inside the wheel (None: the spec names none)."""
    description: str = ""
    """The spec's human-written ``description`` of the eval (a fallback instruction)."""


@dataclass
class RegistryResult:
    tasks: list[TaskData] = field(default_factory=list)
    problems: list[LoadProblem] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------- specs
def _open(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as e:
        raise Text2LoraError(f"cannot read the evals wheel {wheel}: {e}") from None


def read_specs(zf: zipfile.ZipFile, wheel: Path) -> tuple[list[EvalSet], list[LoadProblem]]:
    """Every concrete eval set in the wheel's spec files, one per samples file."""
    import yaml

    sets: list[EvalSet] = []
    problems: list[LoadProblem] = []
    for member in sorted(n for n in zf.namelist() if n.startswith(SPECS_DIR) and n.endswith((".yaml", ".yml"))):
        where = Path(f"{wheel}!{member}")
        try:
            spec = yaml.safe_load(zf.read(member).decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            problems.append(LoadProblem(where, None, f"not a valid YAML spec ({type(e).__name__}); skipped"))
            continue
        if not isinstance(spec, dict):
            problems.append(LoadProblem(where, None, "spec is not a mapping; skipped"))
            continue
        aliases = {v["id"]: (k, v) for k, v in spec.items() if isinstance(v, dict) and isinstance(v.get("id"), str)}
        for key, entry in spec.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("class"), str):
                continue
            base, meta = aliases.get(key, (key.split(".")[0], {}))  # "name.dev.v0" without an alias: "name"
            args = entry.get("args") if isinstance(entry.get("args"), dict) else {}
            samples = args.get("samples_jsonl")
            sets.append(EvalSet(
                name=f"evals.{sanitize_name(str(base))}", spec_file=PurePosixPath(member).stem, cls=entry["class"],
                samples=DATA_DIR + samples if isinstance(samples, str) else None,
                description=str(meta.get("description") or entry.get("description") or "").strip(),
            ))
    return _dedupe(sets), problems


def _dedupe(sets: list[EvalSet]) -> list[EvalSet]:
    """One set per samples file (variants of one eval often share it), with unique task names."""
    by_samples: dict[str, EvalSet] = {}
    other: list[EvalSet] = []
    for s in sets:
        if s.samples is None:
            other.append(s)
        elif s.samples not in by_samples or (s.cls in DETERMINISTIC and by_samples[s.samples].cls not in DETERMINISTIC):
            by_samples[s.samples] = s
    out = list(by_samples.values()) + other
    counts: dict[str, int] = defaultdict(int)
    for s in out:
        counts[s.name] += 1
    for s in out:
        if counts[s.name] > 1 and s.samples is not None:
            s.name = f"{s.name}.{sanitize_name(PurePosixPath(s.samples).stem)}"
    seen: set[str] = set()
    unique = []
    for s in sorted(out, key=lambda s: (s.name, s.samples or "")):
        if s.name not in seen:
            seen.add(s.name)
            unique.append(s)
    return unique


def drop_reason(s: EvalSet, members: set[str]) -> str | None:
    """Why a set cannot become a deterministic task (None: load it)."""
    if s.cls not in DETERMINISTIC:
        kind = s.cls.rsplit(":", 1)[-1]
        if "modelgraded" in s.cls:
            return f"model-graded ({kind})"
        if s.samples is None:
            return f"not a sample-file eval ({kind}: data from a hub or generated by the eval)"
        return f"not scored by a deterministic match ({kind})"
    if s.samples is None:
        return "the spec names no samples_jsonl"
    if s.samples not in members:
        return f"samples file {s.samples} is not in the wheel"
    return None


# ------------------------------------------------------------------------------------------------- samples
@dataclass
class _Sample:
    system: str
    """The leading instruction text of the sample (system messages without a name)."""
    user: str
    ideal: list[str]


class _BadLine(Exception):
    pass


def _content(message: Any) -> str:
    if not isinstance(message, dict) or not isinstance(message.get("content"), str):
        raise _BadLine("a message is not an object with a string 'content'")
    return message["content"]


def parse_sample(obj: Any) -> _Sample | None:
    """One JSONL sample; None when it is well-formed but unusable (several user turns). Raises _BadLine."""
    if not isinstance(obj, dict):
        raise _BadLine("not a JSON object")
    if "ideal" not in obj:
        raise _BadLine("no 'ideal' answer")
    ideal = obj["ideal"]
    ideals = [ideal] if isinstance(ideal, str) else ideal if isinstance(ideal, list) else None
    if ideals is None or not all(isinstance(i, str) for i in ideals):
        raise _BadLine("'ideal' is not a string or a list of strings")
    ideals = [i.strip() for i in ideals if i.strip()]
    if not ideals:
        raise _BadLine("'ideal' is empty")
    messages = obj.get("input")
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise _BadLine("'input' is not a string or a non-empty list of messages")
    system, turns, leading = [], [], True
    for m in messages:
        text = _content(m)
        role = m.get("role")
        if role == "system" and m.get("name") in _FEWSHOT_NAMES:
            leading = False
            continue  # a few-shot turn
        if role == "system" and leading:
            system.append(text)
        elif role in ("user", "system", "assistant"):
            leading = False
            turns.append(("assistant" if role == "assistant" else "user", text))
        else:
            raise _BadLine(f"unknown message role {role!r}")
    roles = [r for r, _ in turns]
    # user, (assistant, user)*: the earlier pairs are worked examples; the last user turn is the input
    if roles and (roles[-1] != "user" or any(r == roles[i + 1] for i, r in enumerate(roles[:-1]))):
        return None
    users = [t for r, t in turns if r == "user"][-1:]
    return _Sample(system="\n".join(system).strip(), user=(users[0] if users else "").strip(), ideal=ideals)


def read_samples(zf: zipfile.ZipFile, wheel: Path, member: str) -> tuple[list[_Sample], int, LoadProblem | None]:
    """A samples file's usable samples, how many were skipped as multi-turn, and one problem for its bad lines."""
    raw = zf.read(member)
    samples, multi, bad = [], 0, []
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            sample = parse_sample(json.loads(line.decode("utf-8-sig")))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            bad.append((lineno, "not valid JSON"))
            continue
        except _BadLine as e:
            bad.append((lineno, str(e)))
            continue
        if sample is None:
            multi += 1  # a conversation that is not one question
        else:
            samples.append(sample)
    problem = None
    if bad:
        shown = ", ".join(f"line {n} ({why})" for n, why in bad[:MAX_BAD_LINES_LISTED])
        more = f" and {len(bad) - MAX_BAD_LINES_LISTED} more" if len(bad) > MAX_BAD_LINES_LISTED else ""
        problem = LoadProblem(Path(f"{wheel}!{member}"), bad[0][0],
                              f"skipped {len(bad)} malformed sample line(s): {shown}{more}")
    return samples, multi, problem


def common_instruction(texts: list[str]) -> str:
    """The instruction all ``texts`` start with, cut after its last full sentence or line ('' when none)."""
    if not texts:
        return ""
    first, last = min(texts), max(texts)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    if n == len(first) == len(last):
        return first.strip()
    prefix = first[:n]
    ends = [m.end() for m in re.finditer(r"[.!?](\s|$)|\n", prefix)]
    return prefix[: ends[-1]].strip() if ends else ""


def is_instruction(text: str) -> bool:
    text = " ".join(text.split())
    return len(text.split()) >= MIN_INSTRUCTION_WORDS and not _GENERIC.match(text)


def build_task(s: EvalSet, samples: list[_Sample]) -> TaskData | str:
    """The task of one set, or the reason it has none."""
    head = samples[:SAMPLE_LINES_FOR_PREFIX]
    shared = common_instruction([x.system for x in head]) if all(x.system for x in head) else ""
    instruction, in_user = shared, False
    if not is_instruction(shared):  # no shared system text, or a stock persona line: stripped all the same
        shared_user = common_instruction([x.user for x in head]) if len(head) > 1 else ""
        if is_instruction(shared_user):
            instruction, in_user = shared_user, True
        elif is_instruction(s.description):
            instruction = ""
        else:
            return "no task instruction (no shared system prompt and no spec description)"
    instances = []
    for x in samples:
        system = x.system[len(shared):].strip() if shared and x.system.startswith(shared) else x.system
        user = x.user[len(instruction):].strip() if in_user and x.user.startswith(instruction) else x.user
        text = "\n".join(p for p in (system, user) if p).strip()
        if not text:
            continue
        instances.append(Instance(input=text, output=x.ideal[0], references=x.ideal if len(x.ideal) > 1 else None))
    if not instances:
        return "no sample has an input left once the instruction is stripped"
    own = " ".join((instruction or s.description).split())
    definition = own if not s.description or s.description in own else f"{own}\n(Eval: {s.description})"
    task = Task(name=s.name, source="", definition=definition, metric=GENERATION, descriptions=[own],
                license=EVALS_LICENSE, origin=ORIGIN)
    return TaskData(task, instances)


# ------------------------------------------------------------------------------------------------- families
def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


FAMILY_JACCARD = 0.6


def assign_families(tasks: list[TaskData], sets: dict[str, EvalSet]) -> None:
    """Set ``task.source`` so that sets sharing a spec file, a data folder or their instruction are one family."""
    parent = list(range(len(tasks)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    def folder(t: TaskData) -> str:
        return PurePosixPath(sets[t.task.name].samples or "").parent.name

    keys: dict[tuple[str, str], int] = {}
    for i, t in enumerate(tasks):
        for key in (("spec", sets[t.task.name].spec_file), ("data", folder(t))):
            if key in keys:
                union(i, keys[key])
            else:
                keys[key] = i
    words = [_words(t.task.description) for t in tasks]
    for i in range(len(tasks)):
        for j in range(i + 1, len(tasks)):
            a, b = words[i], words[j]
            if len(a) >= 8 and len(b) >= 8 and len(a & b) / len(a | b) >= FAMILY_JACCARD:
                union(i, j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(tasks)):
        groups[find(i)].append(i)
    for members in groups.values():
        name = "evals." + sanitize_name(min(folder(tasks[i]) for i in members).lower())
        for i in members:
            tasks[i].task.source = name


# ------------------------------------------------------------------------------------------------- entry
def load_registry(wheel: Path) -> RegistryResult:
    """Every deterministic eval set of the wheel as a task, plus the dropped sets and the problems met."""
    wheel = Path(wheel)
    result = RegistryResult()
    with _open(wheel) as zf:
        members = set(zf.namelist())
        if not any(n.startswith(SPECS_DIR) for n in members):
            raise Text2LoraError(f"{wheel} holds no evals registry ({SPECS_DIR}*.yaml)")
        sets, problems = read_specs(zf, wheel)
        result.problems.extend(problems)
        kept: dict[str, EvalSet] = {}
        for s in sets:
            reason = drop_reason(s, members)
            if reason:
                result.dropped.append({"name": s.name, "reason": reason})
                continue
            samples, multi, problem = read_samples(zf, wheel, s.samples)
            if problem:
                result.problems.append(problem)
            if not samples:
                why = f"all {multi} samples are multi-turn" if multi else "no usable sample"
                result.dropped.append({"name": s.name, "reason": why})
                continue
            built = build_task(s, samples)
            if isinstance(built, str):
                result.dropped.append({"name": s.name, "reason": built})
                continue
            kept[s.name] = s
            result.tasks.append(built)
    assign_families(result.tasks, kept)
    return result

