"""The training batch sampler, seeded and exactly resumable.

:class:`HierarchicalSampler`: each batch draws ``tasks_per_batch`` distinct tasks, ``examples_per_task`` instances
of each, and a random description of the task for every example. ``batch(i)`` depends only on ``(seed, i)``, so
resuming at step ``i`` reproduces the same stream; the loop's checkpoint needs no sampler state.

A batch is a list of :class:`ExampleRef` (``task``, ``index`` into that task's train instances, ``description``);
:func:`encode_refs` turns them into encoded examples (with ``task`` and ``description`` attached) ready for
:func:`text2lora.data.prompts.collate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from text2lora.data.fit import rng_for
from text2lora.data.prompts import encode_example
from text2lora.data.task import Instance


@dataclass(frozen=True)
class ExampleRef:
    task: str
    index: int
    description: str | None = None
    shots: tuple[int, ...] = ()  #: indices into the task's *training* instances shown to the hypernetwork as examples


def draw_shots(rng, n_train: int, exclude: int | None, k_max: int, zero_prob: float) -> tuple[int, ...]:
    """k worked examples from a task's ``n_train`` training instances, never ``exclude`` (the instance being
    trained on): k = 0 with probability ``zero_prob``, else uniform in 1..k_max (capped by what the task has)."""
    pool = [i for i in range(n_train) if i != exclude]
    if k_max < 1 or not pool or rng.random() < zero_prob:
        return ()
    k = rng.randint(1, min(k_max, len(pool)))
    return tuple(rng.sample(pool, k))


class HierarchicalSampler:
    """T tasks per batch, E examples per task, one random description per example."""

    def __init__(
        self,
        sizes: Mapping[str, int],
        descriptions: Mapping[str, Sequence[str]] | None = None,
        *,
        tasks_per_batch: int = 8,
        examples_per_task: int = 1,
        seed: int = 0,
    ):
        self.tasks = sorted(name for name, n in sizes.items() if n > 0)
        if not self.tasks:
            raise ValueError("HierarchicalSampler needs at least one task with instances")
        if tasks_per_batch < 1 or examples_per_task < 1:
            raise ValueError("tasks_per_batch and examples_per_task must be >= 1")
        self.sizes = dict(sizes)
        self.descriptions = {k: list(v) for k, v in (descriptions or {}).items()}
        self.tasks_per_batch = min(tasks_per_batch, len(self.tasks))
        self.examples_per_task = examples_per_task
        self.seed = seed

    def batch(self, step: int) -> list[ExampleRef]:
        """The batch at ``step`` (pure function of the seed and step)."""
        rng = rng_for(self.seed, "hierarchical", str(step))
        refs = []
        for task in rng.sample(self.tasks, self.tasks_per_batch):
            n = self.sizes[task]
            picks = rng.sample(range(n), self.examples_per_task) if self.examples_per_task <= n else \
                [rng.randrange(n) for _ in range(self.examples_per_task)]
            descs = self.descriptions.get(task) or [None]
            refs.extend(ExampleRef(task, i, rng.choice(descs)) for i in picks)
        return refs


def encode_refs(
    refs: Sequence[ExampleRef],
    instances: Mapping[str, Sequence[Instance]],
    tokenizer,
    *,
    description_in_prompt: bool = False,
    max_prompt_tokens: int = 256,
    max_output_tokens: int = 64,
) -> list[dict[str, Any]]:
    """Encode sampled examples; each dict also carries ``task`` and ``description``."""
    out = []
    for ref in refs:
        inst = instances[ref.task][ref.index]
        enc = encode_example(tokenizer, inst, description=ref.description if description_in_prompt else None,
                             max_prompt_tokens=max_prompt_tokens, max_output_tokens=max_output_tokens)
        out.append({**enc, "task": ref.task, "description": ref.description, "shots": ref.shots})
    return out
