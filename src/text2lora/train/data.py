"""Training data from the task library: task selection, sampled batches and fixed validation sets."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from text2lora.data.library import TaskLibrary
from text2lora.data.prompts import collate
from text2lora.data.fit import rng_for
from text2lora.data.samplers import ExampleRef, HierarchicalSampler, draw_shots, encode_refs
from text2lora.data.task import Task
from text2lora.errors import Text2LoraError
from text2lora.examples import EXAMPLES_ONLY_DESCRIPTION
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
                 use_descriptions: bool = True, tasks: list[Task] | None = None, shots_max: int = 0) -> None:
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
        self.shots_max = shots_max  #: 0: no worked examples (a description-only hypernetwork or a LoRA)

    @property
    def batch_size(self) -> int:
        return self.sampler.tasks_per_batch * self.sampler.examples_per_task

    def encode(self, refs: list[ExampleRef], instances: dict) -> dict[str, Any]:
        encoded = encode_refs(refs, instances, self.tokenizer, max_prompt_tokens=self.cfg.max_prompt_tokens,
                              max_output_tokens=self.cfg.max_output_tokens)
        return collate(encoded, self.tokenizer.pad_token_id, padding_side="left")

    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict[str, Any]:
        refs = self.sampler.batch(step * world + rank)
        if self.shots_max:
            refs = [self._with_shots(r, rng_for(self.seed, "shots", str(step * world + rank), str(j)),
                                     self.shots_max, self.cfg.shots_zero_prob, exclude=r.index)
                    for j, r in enumerate(refs)]
        return self.encode(refs, self.train)

    def _with_shots(self, ref: ExampleRef, rng, k_max: int, zero_prob: float, exclude: int | None) -> ExampleRef:
        shots = draw_shots(rng, len(self.train[ref.task]), exclude, k_max, zero_prob)
        description = ref.description
        # drawn only when the option is on, so runs without it keep the stream they always had
        if shots and self.cfg.shots_only_prob and rng.random() < self.cfg.shots_only_prob:
            description = EXAMPLES_ONLY_DESCRIPTION
        return ExampleRef(ref.task, ref.index, description, shots)

    @property
    def shots_only(self) -> bool:
        """Whether some samples are trained on their examples alone (``data.shots_only_prob``)."""
        return bool(self.use_descriptions and self.shots_max and self.cfg.shots_only_prob)

    def shot_examples(self, batch: dict[str, Any]) -> list[list]:
        """The worked examples of each row of an encoded batch (training instances of its task)."""
        from text2lora.examples import example_from_instance

        return [[example_from_instance(self.train[task][i]) for i in shots]
                for task, shots in zip(batch["task"], batch.get("shots") or [() for _ in batch["task"]])]

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
        if self.use_descriptions and self.shots_max and self.cfg.val_shots:
            # the training descriptions again, each validation instance with val_shots training examples
            def shots(ref: ExampleRef) -> tuple[int, ...]:
                n = len(self.train[ref.task])
                return tuple(rng_for(self.seed, "val_shots", ref.task, str(ref.index)).sample(range(n), min(self.cfg.val_shots, n)))

            sets.append(ValSet("val_shots", [ExampleRef(r.task, r.index, r.description, shots(r)) for r in instances]))
            if self.shots_only:  # the same examples with no description: what the examples alone carry
                sets.append(ValSet("val_shots_only", [ExampleRef(r.task, r.index, EXAMPLES_ONLY_DESCRIPTION, shots(r))
                                                      for r in instances]))
        return [s for s in sets if s.refs]

    def val_batches(self, refs: list[ExampleRef]):
        for start in range(0, len(refs), self.batch_size):
            yield self.encode(refs[start:start + self.batch_size], self.val)

    def all_descriptions(self) -> list[str]:
        out: list[str] = []
        for t in self.tasks:
            out.extend(t.training_descriptions)
            out.extend(t.heldout_descriptions)
        if self.shots_only:
            out.append(EXAMPLES_ONLY_DESCRIPTION)
        return sorted(set(out))
