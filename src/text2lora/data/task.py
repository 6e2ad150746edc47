"""The two records of the task library: :class:`Instance` (one example) and :class:`Task` (its metadata).

Both round-trip through plain JSON dicts (``to_json`` / ``from_json``), which is how the library stores them:
one JSONL line per instance, one index entry per task.

* ``Instance(input, output, options=None, answer=None, references=None)``: a generation instance has ``output``
  (the first reference) and optionally ``references`` (every acceptable output, for ROUGE/exact match); a
  multiple-choice instance has ``options`` and ``answer`` (an index into them) and ``output == options[answer]``,
  which is the completion a model is trained on.
* ``Task(name, source, definition, descriptions, heldout_descriptions, metric, split, license, origin, language,
  counts)``:
  ``source`` is the dataset family used to keep related tasks on one side of the seen/unseen split;
  ``descriptions[0]`` is the task's own description, the rest are written by ``text2lora data describe``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from text2lora.errors import Text2LoraError

GENERATION = "generation"
MULTIPLE_CHOICE = "multiple_choice"
METRICS = (GENERATION, MULTIPLE_CHOICE)
SPLITS = ("train", "validation", "test")
TASK_SPLITS = ("seen", "unseen")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def check_task_name(name: str) -> str:
    """A task name is also a file name: letters, digits, ``_ . -``, not starting with a dot."""
    if not _NAME_RE.match(name) or len(name) > 200:
        raise Text2LoraError(f"invalid task name {name!r}: use letters, digits, '_', '.', '-'")
    return name


@dataclass
class Instance:
    """One example of a task."""

    input: str
    """The task input shown to the model (for multiple choice: without the options)."""
    output: str
    """The target completion: the first reference (generation) or the correct option's text (multiple choice)."""
    options: list[str] | None = None
    """Multiple choice only: the candidate answers."""
    answer: int | None = None
    """Multiple choice only: index of the correct option."""
    references: list[str] | None = None
    """Generation only, optional: every acceptable output (``output`` is the first)."""

    def __post_init__(self) -> None:
        if not isinstance(self.input, str) or not isinstance(self.output, str):
            raise ValueError("input and output must be strings")
        if self.options is not None:
            if len(self.options) < 2 or not all(isinstance(o, str) for o in self.options):
                raise ValueError("options must be a list of at least two strings")
            if not isinstance(self.answer, int) or not 0 <= self.answer < len(self.options):
                raise ValueError(f"answer must index the {len(self.options)} options, got {self.answer!r}")
            if self.output != self.options[self.answer]:
                raise ValueError("output must be the text of the correct option")
        elif self.answer is not None:
            raise ValueError("answer given without options")

    @property
    def is_multiple_choice(self) -> bool:
        return self.options is not None

    @classmethod
    def choice(cls, input: str, options: list[str], answer: int) -> Instance:
        """A multiple-choice instance (``output`` filled in from the options)."""
        return cls(input=input, output=options[answer], options=list(options), answer=answer)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Instance:
        return cls(
            input=obj["input"],
            output=obj["output"],
            options=obj.get("options"),
            answer=obj.get("answer"),
            references=obj.get("references"),
        )


@dataclass
class Task:
    """A task's metadata (its instances live in the library's JSONL files)."""

    name: str
    """Unique id, also the file name of its instances."""
    source: str
    """Dataset family (``mctaco``, ``winogrande``, ``bigbench.arithmetic``): tasks sharing one stay on one side."""
    definition: str
    """The full instruction text of the task (for describing it and for the description-in-prompt baseline)."""
    metric: str
    """``generation`` (ROUGE-L / exact match) or ``multiple_choice`` (accuracy by option log-likelihood)."""
    descriptions: list[str] = field(default_factory=list)
    """Training descriptions; ``descriptions[0]`` is the task's own."""
    heldout_descriptions: list[str] = field(default_factory=list)
    """Held-out descriptions for evaluation."""
    split: str | None = None
    """``seen`` (training) or ``unseen`` (zero-shot); ``None`` before splitting."""
    license: str = "unknown"
    origin: str = "unknown"
    """Which loader produced it: ``natural_instructions_v1``, ``bigbench``, ``openai_evals``,
    ``super_natural_instructions``, ``jsonl``."""
    language: str = "unknown"
    """ISO 639-1 code guessed from the task's text (:mod:`text2lora.data.language`), ``xx-<script>`` when unnamed."""
    counts: dict[str, int] = field(default_factory=dict)
    """Instances per split (``train``/``validation``/``test``) and ``total``."""

    def __post_init__(self) -> None:
        check_task_name(self.name)
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.split is not None and self.split not in TASK_SPLITS:
            raise ValueError(f"split must be one of {TASK_SPLITS}, got {self.split!r}")

    @property
    def description(self) -> str:
        """The task's own description (falls back to the definition)."""
        return self.descriptions[0] if self.descriptions else self.definition

    @property
    def training_descriptions(self) -> list[str]:
        """Every description a model may train on (falls back to the definition alone)."""
        return list(self.descriptions) or [self.definition]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Task:
        known = {f for f in cls.__dataclass_fields__}
        if "eval_descriptions" in obj and "heldout_descriptions" not in obj:  # libraries built before the rename
            obj = {**obj, "heldout_descriptions": obj["eval_descriptions"]}
        return cls(**{k: v for k, v in obj.items() if k in known})


def heldout_of(record: dict[str, Any]) -> list[str]:
    """The held-out descriptions of a describe record (also under the key they had before the rename)."""
    return list(record.get("heldout_descriptions", record.get("eval_descriptions", [])))


@dataclass
class TaskData:
    """A loaded task with its instances (what loaders return and the library writes)."""

    task: Task
    instances: list[Instance]
