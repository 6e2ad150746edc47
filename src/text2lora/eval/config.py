"""Evaluation configs: what is scored (:class:`EvalSettings`, part of every cache key) and what is run
(:class:`EvalConfig`: methods, tasks, adapters, report and cache locations)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from text2lora.errors import Text2LoraError
from text2lora.models.bundled import BUNDLED_BASE

#: Method names the CLI accepts (besides ``peft:<dir>`` and ``t2l:<dir>``).
METHODS = ("base", "desc-prompt", "icl3", "multitask-lora", "task-lora", "t2l-recon", "t2l-sft", "t2l")
#: Suffixes for T2L methods whose adapters also read worked examples: ``t2l+shots`` generates each task's adapter
#: from its description and the same ``icl_shots`` examples ``icl3`` shows (none in the prompt);
#: ``+shuffled-shots`` pairs each example's input with another example's output (the control).
SHOT_SUFFIXES = ("+shots", "+shuffled-shots")
T2L_METHODS = ("t2l-recon", "t2l-sft", "t2l")
#: Description groups for the T2L methods.
GROUPS = ("train", "heldout", "other", "random")
#: The default T2L description groups: a training description and held-out ones.
DEFAULT_GROUPS = ("train", "heldout")


@dataclass(frozen=True)
class EvalSettings:
    """Everything that changes a score. Each unit's cache key holds what these settings make of it (its
    instances, description, ICL shots, prompt budget, decoding length), so a change recomputes only affected units."""

    base_model: str = BUNDLED_BASE  #: the model every method runs on
    max_instances: int = 20  #: test instances per task (the first N of its test split)
    max_new_tokens: int = 32  #: generation: greedy decoding stops here or at end of turn
    max_prompt_tokens: int = 256  #: prompts are cut to this many tokens (the input's middle goes first)
    icl_shots: int = 3  #: examples in the prompt for ``icl3``
    icl_max_prompt_tokens: int = 768  #: ``icl3`` prompt budget (shots are dropped, last first, to fit)
    descriptions_per_group: int = 1  #: T2L: descriptions per group and task (scores are averaged over them)
    seed: int = 0  #: picks ICL shots, "other" descriptions and random strings

    def __post_init__(self) -> None:
        for name in ("max_instances", "max_new_tokens", "max_prompt_tokens", "icl_max_prompt_tokens",
                     "descriptions_per_group"):
            if getattr(self, name) < 1:
                raise Text2LoraError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.icl_shots < 0:
            raise Text2LoraError(f"icl-shots must be >= 0, got {self.icl_shots}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EvalConfig:
    """One evaluation run."""

    methods: list[str]  #: method names (see :data:`METHODS`), ``peft:<dir>`` or ``t2l:<dir>``
    settings: EvalSettings = field(default_factory=EvalSettings)
    library: str | None = None  #: task library directory (None: $TEXT2LORA_HOME/library)
    tasks: str = "all"  #: ``all``, ``seen``, ``unseen`` or comma-separated task names
    max_tasks: int | None = None  #: keep the first N tasks (by name) of each split
    task_file: str | None = None  #: a user JSONL task to evaluate instead of library tasks
    description: str | None = None  #: the user task's description (or a header line in the file)
    groups: tuple[str, ...] = DEFAULT_GROUPS  #: T2L description groups to score
    #: per-method groups instead of ``groups``, e.g. ``{"t2l-recon": ("train",)}``
    method_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    lora_library: str | None = None  #: PEFT LoRA library (``<dir>/<task>/``, ``<dir>/_multitask/``)
    t2l_sft: str | None = None  #: checkpoint for ``t2l-sft``
    t2l_recon: str | None = None  #: checkpoint for ``t2l-recon``
    t2l_checkpoint: str | None = None  #: checkpoint for ``t2l`` (None: the default one)
    batch_size: int = 16  #: prompts per forward pass (multiple choice: each with all its options)
    cache_dir: str | None = None  #: score cache (None: $TEXT2LORA_HOME/eval-cache)
    use_cache: bool = True  #: False: compute everything, write nothing to the cache
    progress: bool = True  #: progress bars
    threads: int | None = None  #: torch CPU threads (None: torch's default; 1 is often faster on a busy machine)

    def __post_init__(self) -> None:
        if not self.methods:
            raise Text2LoraError("no methods to evaluate: give {method} (e.g. base, t2l-sft, peft:DIR)")
        for m in self.methods:
            check_method_name(m)
        self.groups = tuple(self.groups)
        for g in self.groups:
            if g not in GROUPS:
                raise Text2LoraError(f"unknown description group {g!r}; choose from {', '.join(GROUPS)}")
        if not self.groups:
            raise Text2LoraError("give at least one description group")
        self.method_groups = {m: tuple(g) for m, g in self.method_groups.items()}
        for m, gs in self.method_groups.items():
            if m not in self.methods:
                raise Text2LoraError(f"{{method_groups}} names {m!r}, which is not among the methods "
                                     f"({', '.join(self.methods)})")
            if not gs or any(g not in GROUPS for g in gs):
                raise Text2LoraError(f"{{method_groups}} {m}: give groups from {', '.join(GROUPS)}")
        if self.threads is not None and self.threads < 1:
            raise Text2LoraError("{threads} must be >= 1")
        if self.batch_size < 1:
            raise Text2LoraError("{batch_size} must be >= 1")
        if self.max_tasks is not None and self.max_tasks < 1:
            raise Text2LoraError("{max_tasks} must be >= 1")
        if self.description is not None and self.task_file is None:
            raise Text2LoraError("{description} describes a {task_file}; give the file too")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["groups"] = list(self.groups)
        out["method_groups"] = {m: list(g) for m, g in self.method_groups.items()}
        return out

    def groups_for(self, method: str) -> tuple[str, ...]:
        """The description groups ``method`` is scored with."""
        return self.method_groups.get(method, self.groups)


def split_shots(name: str) -> tuple[str, str | None]:
    """``t2l+shots`` -> ``("t2l", "+shots")``; a name without a shots suffix -> ``(name, None)``."""
    for suffix in SHOT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, None


def check_method_name(name: str) -> str:
    """Accept a known method name, ``peft:<dir>`` / ``t2l:<dir>``, or a T2L method with a shots suffix
    (``t2l+shots``, ``t2l:<dir>+shuffled-shots``); anything else is a user error."""
    base, suffix = split_shots(name)
    if suffix is not None:
        if base in T2L_METHODS or (base.startswith("t2l:") and base[4:].strip()):
            return name
        raise Text2LoraError(f"{suffix} applies to T2L methods ({', '.join(T2L_METHODS)}, t2l:<dir>), not {base!r}")
    if name in METHODS:
        return name
    prefix, sep, rest = name.partition(":")
    if sep and prefix in ("peft", "t2l") and rest.strip():
        return name
    import difflib

    close = difflib.get_close_matches(name, METHODS, n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise Text2LoraError(f"unknown method {name!r}{hint}; choose from {', '.join(METHODS)}, peft:<dir> or t2l:<dir> "
                         f"(T2L methods also as <method>+shots, <method>+shuffled-shots)")


def split_list(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"a,b" -> ["a", "b"]``; lists (repeated options) are split and flattened too."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]
