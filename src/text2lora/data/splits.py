"""Deterministic splits: seen / unseen tasks by source family, and train / validation / test instances.

* ``split_tasks(tasks, *, unseen_fraction, seed, unseen_sources=None) -> dict[name, "seen" | "unseen"]``:
  source families are shuffled by the seed and moved whole to the unseen side while that keeps the unseen share
  at or under ``unseen_fraction`` of the tasks, so tasks that share a source never straddle the split.
  ``unseen_sources`` names the unseen families explicitly instead.
* ``split_instances(n, *, task_split, seed, name, ...) -> list[str]``: a label per instance. Seen tasks get
  ``test_fraction`` (at least ``min_test``, at most ``max_test``) test and ``validation_fraction`` (capped by
  ``max_validation``) validation instances, the rest train; unseen tasks are all ``test``.
* ``check_disjoint_sources(tasks)`` raises if a source family has tasks on both sides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from text2lora.data.fit import rng_for
from text2lora.data.task import Task
from text2lora.errors import Text2LoraError


def split_tasks(
    tasks: Sequence[Task],
    *,
    unseen_fraction: float = 0.2,
    seed: int = 0,
    unseen_sources: Iterable[str] | None = None,
) -> dict[str, str]:
    """Assign every task to ``seen`` or ``unseen``, keeping each source family on one side."""
    if not 0 <= unseen_fraction < 1:
        raise Text2LoraError(f"unseen fraction must be in [0, 1), got {unseen_fraction}")
    families: dict[str, list[str]] = defaultdict(list)
    for task in tasks:
        families[task.source].append(task.name)
    if unseen_sources is not None:
        chosen = set(unseen_sources)
        unknown = chosen - set(families)
        if unknown:
            raise Text2LoraError(f"unknown source(s) for the unseen split: {', '.join(sorted(unknown))}")
    else:
        order = sorted(families)
        rng_for(seed, "task-split").shuffle(order)
        target = unseen_fraction * len(tasks)
        chosen, count = set(), 0
        for family in order:
            size = len(families[family])
            if count + size <= target:
                chosen.add(family)
                count += size
    return {name: ("unseen" if fam in chosen else "seen") for fam, names in families.items() for name in names}


def split_instances(
    n: int,
    *,
    task_split: str,
    seed: int,
    name: str,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    min_test: int = 5,
    max_test: int = 100,
    max_validation: int = 50,
) -> list[str]:
    """One of ``train`` / ``validation`` / ``test`` per instance, deterministic from seed and task name."""
    if task_split == "unseen":
        return ["test"] * n
    n_test = min(max(round(test_fraction * n), min_test), max_test, n)
    n_val = min(round(validation_fraction * n), max_validation, n - n_test)
    labels = ["test"] * n_test + ["validation"] * n_val + ["train"] * (n - n_test - n_val)
    rng_for(seed, "instance-split", name).shuffle(labels)
    return labels


def check_disjoint_sources(tasks: Iterable[Task]) -> None:
    """Raise when a source family has both seen and unseen tasks."""
    sides: dict[str, set[str]] = defaultdict(set)
    for task in tasks:
        sides[task.source].add(task.split or "?")
    mixed = sorted(s for s, v in sides.items() if len(v) > 1)
    if mixed:
        raise Text2LoraError(f"source families on both sides of the task split: {', '.join(mixed)}")
