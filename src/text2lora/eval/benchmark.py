"""A fixed unseen benchmark: test and validation tasks chosen from a library by their properties, with the ids of
the instances scored, written once and committed before any decision it informs.

    from text2lora.eval.benchmark import BenchmarkRules, select_benchmark, check_benchmark
    bench = select_benchmark(TaskLibrary.load(), BenchmarkRules())   # -> {"rules", "test", "validation", ...}
    check_benchmark(bench, library)                                  # the library still has those instances

Rules (:class:`BenchmarkRules`), applied to the library's unseen tasks, never to any method's scores:

* English (``Task.language == "en"``) and at least ``n_instances`` test instances, of which the first
  ``n_instances`` are scored;
* short deterministic answers: every reference of a generation task at most ``max_answer_words`` words, or
  multiple choice with at most ``max_options`` options;
* answers that are not copies of the input: at most ``max_copy_share`` of the task's instances have an output equal
  to the input (case-sensitive, whitespace aside);
* then, per task source (Natural Instructions v1, BIG-bench, evals registry), the families that have eligible tasks
  are shuffled (seeded) and dealt to ``test`` until it holds ``test_share`` of them, the rest to ``validation``, so
  each source feeds both sides and no family is on both; a family contributes at most ``max_tasks_per_family``
  tasks (a seeded sample), so that one family cannot dominate an average.

Validation alone is for choosing recipes and checkpoints; test is for the claims.

The seen side (:func:`select_seen`, :class:`SeenRules`, ``benchmarks/v2/seen.json``) applies the same property
rules to the library's seen (training) tasks, scored on their held-out test split, for the "no regression on seen
tasks" comparison with per-task LoRAs: a task also needs ``min_train`` training instances, and each source gives
``tasks_per_origin`` families (a seeded draw), one task each (a seeded draw).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from text2lora.data.fit import rng_for
from text2lora.data.library import TaskLibrary
from text2lora.data.task import MULTIPLE_CHOICE, Instance, Task
from text2lora.errors import Text2LoraError
from text2lora.eval.metrics import SHORT_ANSWER_WORDS, is_copy

FORMAT = 1
SIDES = ("test", "validation")


@dataclass(frozen=True)
class PropertyRules:
    """The properties every benchmark task must have, on either side (:func:`property_exclusion`)."""

    n_instances: int = 30
    max_answer_words: int = SHORT_ANSWER_WORDS
    max_options: int = 5
    max_copy_share: float = 0.1
    language: str = "en"


@dataclass(frozen=True)
class BenchmarkRules(PropertyRules):
    max_tasks_per_family: int = 3
    test_share: float = 0.6
    seed: int = 0


def instance_id(inst: Instance) -> str:
    """A short content hash of one instance (its JSON form)."""
    return hashlib.sha256(json.dumps(inst.to_json(), sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]


def exclusion(task: Task, test: list[Instance], rules: BenchmarkRules) -> str | None:
    """Why ``task`` cannot be a benchmark task (None: it can)."""
    if task.split != "unseen":
        return "seen"
    return property_exclusion(task, test, rules)


def property_exclusion(task: Task, test: list[Instance], rules: PropertyRules) -> str | None:
    """Why ``task``'s own properties rule it out of either benchmark, unseen or seen (None: they do not):
    language, test instances, answer length or options, answers copying the input."""
    if task.language != rules.language:
        return f"language {task.language}"
    if len(test) < rules.n_instances:
        return f"{len(test)} test instances (< {rules.n_instances})"
    if task.metric == MULTIPLE_CHOICE:
        most = max(len(i.options or []) for i in test)
        if most > rules.max_options:
            return f"{most} options (> {rules.max_options})"
    else:
        words = max(len(r.split()) for i in test for r in (i.references or [i.output]))
        if words > rules.max_answer_words:
            return f"answers of up to {words} words (> {rules.max_answer_words})"
    copies = sum(is_copy(i.output, i.input) for i in test) / len(test)
    if copies > rules.max_copy_share:
        return f"{100 * copies:.0f}% of answers copy the input"
    return None


def _partition(library: TaskLibrary, tasks: list[Task], exclusion, rules
               ) -> tuple[dict[str, str], dict[str, dict[str, list[Task]]]]:
    """``tasks`` split into the excluded (name -> reason) and the eligible (origin -> family -> tasks)."""
    excluded: dict[str, str] = {}
    eligible: dict[str, dict[str, list[Task]]] = defaultdict(lambda: defaultdict(list))
    for task in tasks:
        reason = exclusion(task, library.instances(task.name, "test"), rules)
        if reason:
            excluded[task.name] = reason
        else:
            eligible[task.origin][task.source].append(task)
    return excluded, eligible


def select_benchmark(library: TaskLibrary, rules: BenchmarkRules = BenchmarkRules()) -> dict[str, Any]:
    """The benchmark of ``library`` under ``rules`` (deterministic: the same library gives the same file)."""
    excluded, eligible = _partition(library, library.unseen(), exclusion, rules)
    sides: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for origin in sorted(eligible):
        families = sorted(eligible[origin])
        rng_for(rules.seed, "benchmark-families", origin).shuffle(families)
        n_test = round(rules.test_share * len(families)) if len(families) > 1 else len(families)
        for k, family in enumerate(families):
            side = "test" if k < n_test else "validation"
            tasks = sorted(eligible[origin][family], key=lambda t: t.name)
            rng_for(rules.seed, "benchmark-tasks", family).shuffle(tasks)
            for task in tasks[rules.max_tasks_per_family:]:
                excluded[task.name] = f"family {family} already has {rules.max_tasks_per_family} tasks"
            for task in sorted(tasks[:rules.max_tasks_per_family], key=lambda t: t.name):
                scored = library.instances(task.name, "test")[:rules.n_instances]
                sides[side].append({"name": task.name, "family": family, "origin": origin, "metric": task.metric,
                                    "instances": [instance_id(i) for i in scored]})
    for side in SIDES:
        sides[side].sort(key=lambda t: t["name"])
    return {"format": FORMAT, "rules": asdict(rules), "library": library_summary(library), **sides,
            "excluded": dict(sorted(excluded.items()))}


def library_summary(library: TaskLibrary) -> dict[str, Any]:
    return {"tasks": len(library.tasks), "sources": library.meta.get("sources", {}), "seed": library.meta.get("seed"),
            "unseen_fraction": library.meta.get("unseen_fraction"),
            "evals_unseen_fraction": library.meta.get("evals_unseen_fraction")}


def check_benchmark(bench: dict[str, Any], library: TaskLibrary, side: str = "test") -> list[str]:
    """The names of ``side``'s tasks, after checking that the library scores exactly the committed instances."""
    if bench.get("format") != FORMAT or side not in SIDES or side not in bench:
        raise Text2LoraError(f"not a format-{FORMAT} benchmark with a {side!r} side")
    return _check_instances(bench[side], library, bench["rules"]["n_instances"])


def _check_instances(entries: list[dict[str, Any]], library: TaskLibrary, n: int) -> list[str]:
    for entry in entries:
        got = [instance_id(i) for i in library.instances(entry["name"], "test")[:n]]
        if got != entry["instances"]:
            raise Text2LoraError(f"the library's test instances of {entry['name']} are not the benchmark's: "
                                 f"rebuild it with the benchmark's sources and settings ({library.root})")
    return [entry["name"] for entry in entries]


def summary(bench: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Counts per side: tasks, families, tasks by source and by metric."""
    return {side: _counts(bench[side]) for side in SIDES}


def _counts(entries: list[dict[str, Any]]) -> dict[str, Any]:
    by_origin: dict[str, int] = defaultdict(int)
    by_metric: dict[str, int] = defaultdict(int)
    for e in entries:
        by_origin[e["origin"]] += 1
        by_metric[e["metric"]] += 1
    return {"tasks": len(entries), "families": len({e["family"] for e in entries}), "by_source": dict(by_origin),
            "by_metric": dict(by_metric)}


# ------------------------------------------------------------------------------------------------- seen side
SEEN = "seen"


@dataclass(frozen=True)
class SeenRules(PropertyRules):
    """Rules of the seen side: training tasks scored on their held-out test split. The property rules are the
    unseen benchmark's (:func:`property_exclusion`); a task also needs ``min_train`` training instances (for its
    per-task LoRA). Each source gives ``tasks_per_origin`` families (seeded), one task each (seeded)."""

    min_train: int = 40
    tasks_per_origin: int = 5
    seed: int = 0


def seen_exclusion(task: Task, test: list[Instance], rules: SeenRules) -> str | None:
    """Why ``task`` cannot be a seen benchmark task (None: it can)."""
    if task.split != SEEN:
        return task.split or "not split"
    reason = property_exclusion(task, test, rules)
    if reason is None and task.counts.get("train", 0) < rules.min_train:
        reason = f"{task.counts.get('train', 0)} training instances (< {rules.min_train})"
    return reason


def select_seen(library: TaskLibrary, rules: SeenRules = SeenRules()) -> dict[str, Any]:
    """The seen side of ``library`` under ``rules`` (deterministic: the same library gives the same file)."""
    excluded, eligible = _partition(library, library.seen(), seen_exclusion, rules)
    chosen: list[dict[str, Any]] = []
    for origin in sorted(eligible):
        families = sorted(eligible[origin])
        rng_for(rules.seed, "seen-families", origin).shuffle(families)
        for k, family in enumerate(families):
            tasks = sorted(eligible[origin][family], key=lambda t: t.name)
            rng_for(rules.seed, "seen-tasks", family).shuffle(tasks)
            if k >= rules.tasks_per_origin:
                for task in tasks:
                    excluded[task.name] = f"{origin} already has {rules.tasks_per_origin} families"
                continue
            for task in tasks[1:]:
                excluded[task.name] = f"family {family} already has {tasks[0].name}"
            scored = library.instances(tasks[0].name, "test")[:rules.n_instances]
            chosen.append({"name": tasks[0].name, "family": family, "origin": origin, "metric": tasks[0].metric,
                           "train": tasks[0].counts.get("train", 0), "instances": [instance_id(i) for i in scored]})
    chosen.sort(key=lambda t: t["name"])
    return {"format": FORMAT, "side": SEEN, "rules": asdict(rules), "library": library_summary(library),
            SEEN: chosen, "excluded": dict(sorted(excluded.items()))}


def check_seen(seen: dict[str, Any], library: TaskLibrary) -> list[str]:
    """The names of the seen side's tasks, after checking that each is still a seen task of ``library`` with at
    least ``min_train`` training instances, and that the library scores exactly the committed instances."""
    if seen.get("format") != FORMAT or seen.get("side") != SEEN or SEEN not in seen:
        raise Text2LoraError(f"not a format-{FORMAT} seen benchmark")
    for entry in seen[SEEN]:
        task = library.task(entry["name"])
        if task.split != SEEN or task.counts.get("train", 0) < seen["rules"]["min_train"]:
            raise Text2LoraError(f"{entry['name']} is not a seen task with {seen['rules']['min_train']} training "
                                 f"instances in {library.root}: rebuild it with the benchmark's sources and settings")
    return _check_instances(seen[SEEN], library, seen["rules"]["n_instances"])


def seen_summary(seen: dict[str, Any]) -> dict[str, Any]:
    """Counts of the seen side: tasks, families, tasks by source and by metric."""
    return _counts(seen[SEEN])
