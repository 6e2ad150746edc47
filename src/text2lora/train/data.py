"""Training data from the task library: task selection, sampled batches and fixed validation sets."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from text2lora.data.library import TaskLibrary
from text2lora.data.prompts import collate
from text2lora.data.samplers import ExampleRef, HierarchicalSampler, encode_refs
from text2lora.data.task import Task
from text2lora.errors import Text2LoraError
from text2lora.train.config import DataConfig


def select_tasks(library: TaskLibrary, data: DataConfig) -> list[Task]:
    """The tasks a config names: ``seen``, ``all`` or a comma-separated list, capped at ``max_tasks``."""
    if data.tasks == "seen":
        tasks = library.seen()
    elif data.tasks == "all":
        tasks = list(library.tasks)
    else:
        tasks = [library.task(name.strip()) for name in data.tasks.split(",") if name.strip()]
    tasks = sorted(tasks, key=lambda t: t.name)
    if data.max_tasks is not None:
        tasks = tasks[: data.max_tasks]
    usable = [t for t in tasks if library.instances(t.name, "train")]
    if not usable:
        raise Text2LoraError(f"no tasks with training instances for data.tasks={data.tasks!r} in {library.root}")
    return usable


@dataclass
class ValSet:
    name: str
    refs: list[ExampleRef]


class TrainData:
    """Batches of encoded, left-padded examples with their task and description attached."""

    def __init__(self, library: TaskLibrary, tokenizer, data: DataConfig, *, seed: int,
                 use_descriptions: bool = True, tasks: list[Task] | None = None) -> None:
        self.library, self.tokenizer, self.cfg = library, tokenizer, data
        self.tasks = tasks if tasks is not None else select_tasks(library, data)
        self.train = {t.name: library.instances(t.name, "train") for t in self.tasks}
        self.val = {t.name: library.instances(t.name, "validation")[: data.val_instances_per_task] for t in self.tasks}
        descriptions = {t.name: t.training_descriptions for t in self.tasks} if use_descriptions else None
        self.sampler = HierarchicalSampler(
            {k: len(v) for k, v in self.train.items()}, descriptions,
            tasks_per_batch=data.tasks_per_batch, examples_per_task=data.examples_per_task, seed=seed,
        )
        self.use_descriptions = use_descriptions
        self.seed = seed

    @property
    def batch_size(self) -> int:
        return self.sampler.tasks_per_batch * self.sampler.examples_per_task

    def encode(self, refs: list[ExampleRef], instances: dict) -> dict[str, Any]:
        encoded = encode_refs(refs, instances, self.tokenizer, max_prompt_tokens=self.cfg.max_prompt_tokens,
                              max_output_tokens=self.cfg.max_output_tokens)
        return collate(encoded, self.tokenizer.pad_token_id, padding_side="left")

    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict[str, Any]:
        return self.encode(self.sampler.batch(step * world + rank), self.train)

    def val_sets(self) -> list[ValSet]:
        """Held-out instances with training descriptions, and (where a task has them) held-out descriptions."""
        rng = random.Random(self.seed + 1)
        names = sorted(self.val)
        if self.cfg.val_tasks is not None:
            names = names[: self.cfg.val_tasks]
        by_name = {t.name: t for t in self.tasks}
        instances = [ExampleRef(n, i, rng.choice(by_name[n].training_descriptions) if self.use_descriptions else None)
                     for n in names for i in range(len(self.val[n]))]
        sets = [ValSet("val_instances" if self.use_descriptions else "val_loss", instances)]
        if self.use_descriptions:
            held = [ExampleRef(n, i, rng.choice(by_name[n].heldout_descriptions))
                    for n in names if by_name[n].heldout_descriptions for i in range(len(self.val[n]))]
            if held:
                sets.append(ValSet("val_heldout", held))
        return [s for s in sets if s.refs]

    def val_batches(self, refs: list[ExampleRef]):
        for start in range(0, len(refs), self.batch_size):
            yield self.encode(refs[start:start + self.batch_size], self.val)

    def all_descriptions(self) -> list[str]:
        out: list[str] = []
        for t in self.tasks:
            out.extend(t.training_descriptions)
            out.extend(t.heldout_descriptions)
        return sorted(set(out))
