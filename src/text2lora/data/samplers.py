"""Batch samplers for training, seeded and exactly resumable (``state_dict()`` / ``load_state_dict()``).

* :class:`HierarchicalSampler`: each batch draws ``tasks_per_batch`` distinct tasks, ``examples_per_task``
  instances of each, and a random description of the task for every example. It is infinite; batch ``i``
  depends only on ``(seed, i)``, so resuming at step ``i`` reproduces the same stream.
* :class:`LengthBucketSampler`: epochs over a flat list of examples; each epoch shuffles, sorts pools of
  ``batch_size * pool_batches`` examples by length, cuts them into batches (little padding) and shuffles the
  batch order. State is ``(epoch, position)``.

Both yield lists of :class:`ExampleRef` (``task``, ``index`` into that task's train instances, ``description``);
:func:`encode_refs` turns them into encoded examples (with ``task`` and ``description`` attached) ready for
:func:`text2lora.data.prompts.collate`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
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
        self.step = 0

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

    def __iter__(self) -> Iterator[list[ExampleRef]]:
        while True:
            refs = self.batch(self.step)
            self.step += 1
            yield refs

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "step": self.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"sampler state has seed {state['seed']}, this sampler {self.seed}")
        self.step = int(state["step"])


class LengthBucketSampler:
    """Epochs of batches of similar length (less padding), over ``lengths[i]`` of example ``i``."""

    def __init__(self, lengths: Sequence[int], *, batch_size: int = 8, pool_batches: int = 50, seed: int = 0,
                 drop_last: bool = False):
        if batch_size < 1 or pool_batches < 1:
            raise ValueError("batch_size and pool_batches must be >= 1")
        self.lengths = list(lengths)
        self.batch_size, self.pool_batches, self.seed, self.drop_last = batch_size, pool_batches, seed, drop_last
        self.epoch, self.position = 0, 0

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        rng = rng_for(self.seed, "buckets", str(epoch))
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        pool = self.batch_size * self.pool_batches
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=lambda i: self.lengths[i])
            batches.extend(chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        rng.shuffle(batches)
        return batches

    def __len__(self) -> int:
        return len(self.epoch_batches(0))

    def __iter__(self) -> Iterator[list[int]]:
        """Batches of the current epoch from the saved position; advances to the next epoch at its end."""
        batches = self.epoch_batches(self.epoch)
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield batch
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"sampler state has seed {state['seed']}, this sampler {self.seed}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


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
        out.append({**enc, "task": ref.task, "description": ref.description})
    return out
