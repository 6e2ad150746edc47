"""Evaluation methods. A method turns a task into :class:`Unit` s (one per description it is scored with), says
how each unit's prompt is built, and supplies each unit's adapter (or none).

* ``base``, ``desc-prompt`` (the task's description above the input), ``icl3`` (3 examples as earlier turns):
  the base model, no adapter.
* ``multitask-lora``, ``task-lora``, ``peft:<dir>``: PEFT LoRA directories (``<lora library>/_multitask``,
  ``<lora library>/<task>``, any directory); a task without its own adapter is skipped, with the reason kept.
* ``t2l-sft``, ``t2l-recon``, ``t2l``, ``t2l:<dir>``: hypernetwork checkpoints, one adapter per description,
  for each description group: ``train`` (the task's own training description), ``heldout`` (its held-out
  evaluation descriptions), ``other`` (descriptions of tasks from other source families) and ``random``
  (random letters shaped like the task's description).
* ``<t2l method>+shots``: the adapter is generated from the description *and* the task's ``icl_shots`` examples
  (the very ones ``icl3`` puts in its prompt, so the two are paired); the prompt stays plain.
  ``<t2l method>+shuffled-shots``: the same examples with each input paired with another example's output.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from text2lora.data.task import Task
from text2lora.errors import Text2LoraError
from text2lora.eval.cache import hash_files
from text2lora.eval.config import EvalConfig
from text2lora.eval.tasks import EvalTask
from text2lora.lora import PEFT_CONFIG, PEFT_WEIGHTS, LoraWeights, load_peft_adapter

PLAIN, DESCRIPTION, ICL = "plain", "description", "icl"
T2L_FILES = ("t2l_config.json", "hypernet.safetensors")
PEFT_FILES = (PEFT_CONFIG, PEFT_WEIGHTS)


@dataclass(frozen=True)
class Unit:
    """One cached score: a method on a task with one description."""

    method: str  #: the method's name, e.g. ``t2l-sft`` or ``peft:my-adapter``
    group: str  #: T2L description group, or "" for other methods
    task: str
    description: str | None  #: the text the adapter is generated from, or the prompt shows
    prompt: str  #: ``plain``, ``description`` or ``icl``

    @property
    def label(self) -> str:
        """The column a score goes to: ``t2l-sft[heldout]``, or the method name."""
        return f"{self.method}[{self.group}]" if self.group else self.method


class DescriptionGroups:
    """Which descriptions each T2L group scores a task with (seeded, so reruns hit the cache)."""

    def __init__(self, all_tasks: list[Task], n: int, seed: int) -> None:
        self.all_tasks = sorted(all_tasks, key=lambda t: t.name)
        self.n, self.seed = n, seed

    def pick(self, group: str, task: Task) -> list[str]:
        if group == "train":
            return task.training_descriptions[: self.n]
        if group == "heldout":
            return task.heldout_descriptions[: self.n]
        rng = random.Random(f"{self.seed}/{group}/{task.name}")
        if group == "other":
            others = [t for t in self.all_tasks if t.source != task.source and t.name != task.name]
            return [t.description for t in rng.sample(others, min(self.n, len(others)))]
        if group == "random":
            return [random_like(task.description, rng) for _ in range(self.n)]
        raise Text2LoraError(f"unknown description group {group!r}")


def random_like(text: str, rng: random.Random) -> str:
    """Random lower-case letters with the word lengths of ``text``: a description's shape, none of its meaning."""
    words = text.split() or ["x"]
    return " ".join("".join(rng.choice(string.ascii_lowercase) for _ in w) for w in words)


class Method:
    """Base: a prompt variant and no adapter."""

    uses_adapters = False

    def __init__(self, name: str, prompt: str = PLAIN) -> None:
        self.name, self.prompt = name, prompt
        self.skipped: dict[str, str] = {}  #: task -> why it has no unit

    def units(self, etask: EvalTask, groups: DescriptionGroups, group_names: tuple[str, ...]) -> list[Unit]:
        description = etask.task.description if self.prompt == DESCRIPTION else None
        return [Unit(self.name, "", etask.name, description, self.prompt)]

    def fingerprint(self, unit: Unit) -> dict[str, Any]:
        return {"name": self.name, "prompt": self.prompt}

    def adapters(self, units: list[Unit]) -> list[LoraWeights] | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "prompt": self.prompt}


class PeftMethod(Method):
    """PEFT LoRA directories: one for every task (``fixed``) or ``<library>/<task>``."""

    uses_adapters = True

    def __init__(self, name: str, model, *, fixed: Path | None = None, library: Path | None = None) -> None:
        super().__init__(name)
        self.model, self.fixed, self.library = model, fixed, library
        self._loaded: dict[Path, LoraWeights] = {}
        if fixed is not None:
            self._load(fixed)  # fail before any scoring

    def directory(self, task: str) -> Path:
        return self.fixed if self.fixed is not None else self.library / task

    def units(self, etask: EvalTask, groups: DescriptionGroups, group_names: tuple[str, ...]) -> list[Unit]:
        path = self.directory(etask.name)
        if not (path / PEFT_CONFIG).is_file():
            self.skipped[etask.name] = f"no adapter at {path}"
            return []
        return super().units(etask, groups, group_names)

    def fingerprint(self, unit: Unit) -> dict[str, Any]:
        path = self.directory(unit.task)
        return {"name": self.name, "kind": "peft", "files": hash_files(path, PEFT_FILES)}

    def adapters(self, units: list[Unit]) -> list[LoraWeights]:
        return [self._load(self.directory(u.task)) for u in units]

    def _load(self, path: Path) -> LoraWeights:
        if path not in self._loaded:
            self._loaded[path] = load_adapter_for(path, self.model)
        return self._loaded[path]

    def describe(self) -> dict[str, Any]:
        where = self.fixed if self.fixed is not None else self.library
        return {"name": self.name, "kind": "peft", "path": str(where)}


class T2LMethod(Method):
    """A hypernetwork checkpoint: one generated adapter per (task, description)."""

    uses_adapters = True

    def __init__(self, name: str, checkpoint: Path, model, *, shots: str | None = None, k: int = 3,
                 seed: int = 0) -> None:
        super().__init__(name)
        self.checkpoint = Path(checkpoint)
        self.t2l = load_t2l_for(self.checkpoint, model)
        self.files = hash_files(self.checkpoint, T2L_FILES)
        self.shots, self.k, self.seed = shots, k, seed  #: None, "+shots" or "+shuffled-shots"
        self.examples: dict[str, list] = {}  #: task -> the examples its adapters are generated from
        if shots is not None:
            if k < 1:
                raise Text2LoraError(f"{name} needs at least one shot ({{icl_shots}} is {k})")
            self.t2l.require_examples(k)

    def task_examples(self, etask: EvalTask) -> list | None:
        """The examples of ``etask`` (icl3's shots, shuffled for the control), or None when the task has too few
        instances outside the scored ones to give every instance the same shots."""
        from text2lora.examples import example_from_instance, shuffled_outputs

        if len(etask.pool) < self.k:
            return None
        examples = [example_from_instance(i) for i in etask.shots(0, self.k, self.seed)]
        return shuffled_outputs(examples) if self.shots == "+shuffled-shots" else examples

    def units(self, etask: EvalTask, groups: DescriptionGroups, group_names: tuple[str, ...]) -> list[Unit]:
        if self.shots is not None:
            examples = self.task_examples(etask)
            if examples is None:
                self.skipped[etask.name] = f"fewer than {self.k} instances outside the scored ones to take shots from"
                return []
            self.examples[etask.name] = examples
        out = []
        for group in group_names:
            descriptions = groups.pick(group, etask.task)
            if not descriptions:
                self.skipped[f"{etask.name} [{group}]"] = f"the task has no {group} descriptions"
            out += [Unit(self.name, group, etask.name, d, PLAIN) for d in descriptions]
        return out

    def fingerprint(self, unit: Unit) -> dict[str, Any]:
        out = {"name": self.name, "kind": "t2l", "files": self.files}
        if self.shots is not None:
            out["examples"] = [e.to_json() for e in self.examples[unit.task]]
        return out

    def adapters(self, units: list[Unit]) -> list[LoraWeights]:
        if self.shots is None:
            keys = list(dict.fromkeys(u.description for u in units))
            weights = self.t2l.generate(keys)
            index = {t: i for i, t in enumerate(keys)}
            return [weights.select(index[u.description]) for u in units]
        pairs = list(dict.fromkeys((u.description, u.task) for u in units))
        weights = self.t2l.generate([d for d, _ in pairs], examples=[self.examples[t] for _, t in pairs])
        index = {p: i for i, p in enumerate(pairs)}
        return [weights.select(index[(u.description, u.task)]) for u in units]

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "kind": "t2l", "path": str(self.checkpoint),
               "base_model": self.t2l.meta.base_model, "info": self.t2l.meta.info}
        if self.shots is not None:
            out["shots"] = {"mode": self.shots, "k": self.k}
        return out


def load_adapter_for(path: Path, model) -> LoraWeights:
    """Read a PEFT LoRA directory for ``model``; an adapter made for another model is a clear error."""
    from safetensors import safe_open

    from text2lora.models.targets import discover_targets

    path = Path(path)
    if not (path / PEFT_CONFIG).is_file():
        raise Text2LoraError(f"{path} is not a PEFT adapter directory (no {PEFT_CONFIG})")
    try:
        with safe_open(str(path / PEFT_WEIGHTS), framework="pt") as f:
            keys = list(f.keys())
    except FileNotFoundError:
        raise Text2LoraError(f"{path} has no {PEFT_WEIGHTS}") from None
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise Text2LoraError(f"cannot read {path / PEFT_WEIGHTS}: {e}") from None
    modules = sorted({k.rsplit(".", 3)[-3] for k in keys if ".lora_A." in k or ".lora_B." in k})
    made_for = _adapter_base(path)
    try:
        layout = discover_targets(model.config, tuple(modules))
        return load_peft_adapter(path, layout)
    except Text2LoraError as e:
        raise Text2LoraError(f"the adapter {path}{made_for} does not fit this base model: {e}") from None


def _adapter_base(path: Path) -> str:
    import json

    try:
        base = json.loads((path / PEFT_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError):
        return ""
    return f" (made for {base})" if base else ""


def load_t2l_for(checkpoint: Path, model):
    """Load a hypernetwork checkpoint and check its targets against ``model``."""
    from text2lora.api import T2L
    from text2lora.models.targets import discover_targets

    t2l = T2L.load(checkpoint, device=str(model.device))
    try:
        ours = discover_targets(model.config, t2l.layout.names)
    except Text2LoraError as e:
        ours, reason = None, str(e)
    if ours is None:
        raise Text2LoraError(f"the checkpoint {checkpoint} was made for {t2l.meta.base_model} "
                             f"({t2l.layout.summary()}); this base model differs ({reason})")
    t2l.layout.require_fits(ours, what=f"the checkpoint {checkpoint}", made_for=t2l.meta.base_model,
                            model="this base model")
    return t2l


def method_path(name: str, config: EvalConfig) -> Path | None:
    """The adapter, LoRA library or checkpoint directory a method reads (checked to exist), or None."""
    from text2lora.eval.config import check_method_name, split_shots

    check_method_name(name)
    name = split_shots(name)[0]
    if name in ("base", "desc-prompt", "icl3"):
        return None
    if name in ("multitask-lora", "task-lora"):
        library = _existing(config.lora_library, f"{name} needs {{lora_library}} DIR (from `text2lora train lora`)")
        if name == "multitask-lora":
            return _existing(str(library / "_multitask"), f"{name}: no multi-task adapter in {library}")
        return library
    if name.startswith("peft:"):
        return _existing(name[5:], f"{name}: no such adapter directory")
    if name in ("t2l-sft", "t2l-recon"):
        option = config.t2l_sft if name == "t2l-sft" else config.t2l_recon
        return _existing(option, f"{name} needs {{{name.replace('-', '_')}}} CHECKPOINT (a `text2lora train` run's best/ directory)")
    if name == "t2l":
        if config.t2l_checkpoint:
            return _existing(config.t2l_checkpoint, "t2l: no such checkpoint directory")
        from text2lora.api import default_checkpoint

        return default_checkpoint()
    if name.startswith("t2l:"):
        return _existing(name[4:], f"{name}: no such checkpoint directory")
    raise Text2LoraError(f"method {name!r} is not implemented")


def build_method(name: str, config: EvalConfig, model) -> Method:
    """The method a CLI name stands for, with its files checked against ``model``."""
    from text2lora.eval.config import split_shots

    path = method_path(name, config)
    base, shots = split_shots(name)
    if shots is not None:
        label = f"t2l:{path.name}{shots}" if base.startswith("t2l:") else name
        return T2LMethod(label, path, model, shots=shots, k=config.settings.icl_shots,
                         seed=config.settings.seed)
    if name in ("base", "desc-prompt", "icl3"):
        return Method(name, {"base": PLAIN, "desc-prompt": DESCRIPTION, "icl3": ICL}[name])
    if name == "multitask-lora" or name.startswith("peft:"):
        return PeftMethod(name if name == "multitask-lora" else f"peft:{path.name}", model, fixed=path)
    if name == "task-lora":
        return PeftMethod(name, model, library=path)
    if name.startswith("t2l:"):
        return T2LMethod(f"t2l:{path.name}", path, model)
    return T2LMethod(name, path, model)


def _existing(path: str | None, message: str) -> Path:
    if not path or not Path(path).is_dir():
        if path and Path(path).exists():
            raise Text2LoraError(f"{path} is not a directory")
        raise Text2LoraError(message + (f" (not found: {path})" if path else ""))
    return Path(path)
