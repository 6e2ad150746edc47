"""Build the task library: fetch -> extract -> load -> fit to budget -> split -> write.

``prepare_library(PrepareConfig(...)) -> PrepareReport`` is what ``text2lora data prepare`` runs.

* Idempotent: the same sources, tokenizer and settings give byte-identical files.
* Resumable: the download and the extraction (the slow steps) are cached under ``home()`` and checked
  (sha256, a completion marker); a rerun redoes only the normalising pass, and keeps the descriptions that
  ``data describe`` cached in ``<library>/descriptions``.
* Per-source cap: BIG-bench subtasks are visited in a seeded order and a family stops being loaded once
  ``budget.max_tasks_per_source`` of its tasks are kept.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from text2lora.data import bigbench, evals_registry
from text2lora.data.fit import Budget, fit_task, rng_for
from text2lora.data.library import (
    apply_descriptions,
    default_library_dir,
    write_index,
    write_task_instances,
)
from text2lora.data.loaders import (
    FORMATS,
    NI1_DIR,
    LoadProblem,
    iter_bigbench_dir,
    list_subtasks,
    load_path,
)
from text2lora.data.language import guess_language
from text2lora.data.splits import check_disjoint_sources, split_instances, split_tasks
from text2lora.data.task import Task, TaskData
from text2lora.errors import Text2LoraError
from text2lora.models.bundled import BUNDLED_BASE

log = logging.getLogger(__name__)

SOURCES = ("ni1", "bigbench", "evals")
"""Built-in task sources: Natural Instructions v1 and BIG-bench (both in the bigbench sdist), the evals registry."""
PINNED_FILES = {bigbench.BIGBENCH_SDIST: bigbench.BIGBENCH_SHA256, evals_registry.EVALS_WHEEL: evals_registry.EVALS_SHA256}
"""The files the built-in sources come from, by name, with their sha256 (what ``--source-file`` takes)."""
LANGUAGE_SAMPLE = 20
"""Instances whose text joins the definition in guessing a task's language."""


@dataclass
class PrepareConfig:
    """Settings of one library build (saved in the index's ``meta``)."""

    out: Path | None = None
    """Library directory (default ``$TEXT2LORA_HOME/library``)."""
    sources: list[str] = field(default_factory=lambda: list(SOURCES))
    """Built-in task sources (``SOURCES``): Natural Instructions v1 and BIG-bench from the pinned ``bigbench`` sdist,
    OpenAI's evals registry from the pinned ``evals`` wheel."""
    extra: list[Path] = field(default_factory=list)
    """More task files or directories (SNI v2 task files, BIG-bench JSON, user JSONL)."""
    format: str = "auto"
    """Format of the ``extra`` paths (``auto`` detects it per file)."""
    description: str | None = None
    """Description for user JSONL files without a header line."""
    tokenizer: str = BUNDLED_BASE
    """Tokenizer that token budgets are measured in (the base model's)."""
    budget: Budget = field(default_factory=Budget)
    seed: int = 0
    unseen_fraction: float = 0.2
    """Share of the Natural Instructions, BIG-bench and extra tasks held out as unseen (whole source families)."""
    evals_unseen_fraction: float = 0.4
    """The same for the evals registry, split on its own: larger, so that the unseen benchmark finds enough English
    short-answer families there (its sets are the most varied source, and no checkpoint trained on them before)."""
    unseen_sources: list[str] | None = None
    """Explicit unseen source families (overrides ``unseen_fraction``)."""

    def __post_init__(self) -> None:
        if isinstance(self.sources, str):  # "ni1,bigbench" in a YAML config
            self.sources = [s.strip() for s in self.sources.split(",") if s.strip()]
        self.extra = [Path(p) for p in self.extra]
        if self.format not in FORMATS:
            raise Text2LoraError(f"unknown format {self.format!r}; use one of {', '.join(FORMATS)}")
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown:
            raise Text2LoraError(f"unknown task source {unknown[0]!r}; use some of {', '.join(SOURCES)}")
        if not self.sources and not self.extra:
            raise Text2LoraError("nothing to prepare: no built-in source and no extra path")

    @property
    def bigbench(self) -> bool:
        """Whether the bigbench sdist is needed (it carries both Natural Instructions v1 and BIG-bench)."""
        return "ni1" in self.sources or "bigbench" in self.sources


@dataclass
class PrepareReport:
    root: Path
    tasks: list[Task]
    dropped: list[dict[str, str]]
    problems: list[str]


class _Builder:
    """Collects fitted tasks and drop reasons while sources are loaded."""

    def __init__(self, config: PrepareConfig, tokenizer):
        self.config, self.tokenizer = config, tokenizer
        self.kept: dict[str, TaskData] = {}
        self.per_source: Counter = Counter()
        self.capped: Counter = Counter()
        self.dropped: list[dict[str, str]] = []
        self.problems: list[str] = []

    def want(self, name: str, source: str) -> bool:
        if self.per_source[source] >= self.config.budget.max_tasks_per_source:
            self.capped[source] += 1
            self.dropped.append({"name": name, "reason": f"over the cap of {self.config.budget.max_tasks_per_source} "
                                                          f"tasks for source {source}"})
            return False
        return True

    def add(self, item: TaskData | LoadProblem) -> None:
        if isinstance(item, LoadProblem):
            self.problems.append(str(item))
            return
        name = item.task.name
        if name in self.kept:
            self.dropped.append({"name": name, "reason": "duplicate task name (an earlier source has it)"})
            return
        if not self.want(name, item.task.source):
            return
        result = fit_task(item, self.tokenizer, self.config.budget, seed=self.config.seed)
        if result.data is None:
            self.dropped.append({"name": name, "reason": result.reason or "no usable instances"})
            return
        task = result.data.task
        sample = [f"{i.input} {i.output}" for i in result.data.instances[:LANGUAGE_SAMPLE]]
        task.language = guess_language(name, [task.definition, *sample])
        self.kept[name] = result.data
        self.per_source[item.task.source] += 1


def _bigbench_sources(builder: _Builder, root: Path, progress: bool) -> dict[str, str]:
    from tqdm import tqdm

    wanted = set(builder.config.sources)
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and ("ni1" if p.name == NI1_DIR else "bigbench") in wanted)
    # Natural Instructions first: its tasks have the richest definitions.
    dirs.sort(key=lambda p: p.name != NI1_DIR)
    for task_dir in tqdm(dirs, desc="loading tasks", unit="dir", disable=not progress):
        order = list_subtasks(task_dir)
        rng_for(builder.config.seed, "subtask-order", task_dir.name).shuffle(order)
        for item in iter_bigbench_dir(task_dir, order=order, want=builder.want):
            builder.add(item)
    return {name: f"{bigbench.BIGBENCH_REQUIREMENT} sha256:{bigbench.BIGBENCH_SHA256}"
            for name in ("ni1", "bigbench") if name in wanted}


def _evals_source(builder: _Builder, wheel: Path) -> dict[str, str]:
    result = evals_registry.load_registry(wheel)
    builder.dropped.extend(result.dropped)
    rng_for(builder.config.seed, "evals-order").shuffle(result.tasks)  # which sets a family's cap keeps
    for item in [*result.problems, *result.tasks]:
        builder.add(item)
    return {"evals": f"{evals_registry.EVALS_REQUIREMENT} sha256:{evals_registry.EVALS_SHA256}"}


def prepare_library(config: PrepareConfig, *, progress: bool = True,
                    load_tokenizer: Callable | None = None) -> PrepareReport:
    """Build (or rebuild) the task library described by ``config``."""
    # downloads first: a registry problem should show before the slow steps
    if config.bigbench:
        try:
            sdist = bigbench.fetch_sdist(quiet=not progress)
        except Text2LoraError as e:
            others = [s for s in config.sources if s not in ("ni1", "bigbench")]
            hint = f"--sources {','.join(others)}" if others else "--sources none --extra DIR"
            raise Text2LoraError(f"{e}; or build without BIG-bench and Natural Instructions v1: {hint}") from None
        sources_root = bigbench.extract_tasks(sdist, progress=progress)
    if "evals" in config.sources:
        evals_wheel = evals_registry.fetch_wheel(quiet=not progress)
    if load_tokenizer is None:
        from text2lora.models.base import load_tokenizer
    tokenizer = load_tokenizer(config.tokenizer)
    root = Path(config.out) if config.out is not None else default_library_dir()
    builder = _Builder(config, tokenizer)
    sources: dict[str, str] = {}
    if config.bigbench:
        sources.update(_bigbench_sources(builder, sources_root, progress))
    if "evals" in config.sources:
        sources.update(_evals_source(builder, evals_wheel))
    for path in config.extra:
        result = load_path(path, format=config.format, description=config.description)
        for item in [*result.problems, *result.tasks]:
            builder.add(item)
        sources[str(path)] = config.format
    if not builder.kept:
        detail = "; ".join(builder.problems[:3]) or "every task was dropped"
        raise Text2LoraError(f"no usable task found ({detail})")

    tasks = [d.task for d in builder.kept.values()]
    sides = _split(tasks, config)
    for data in builder.kept.values():
        task = data.task
        task.split = sides[task.name]
        labels = split_instances(len(data.instances), task_split=task.split, seed=config.seed, name=task.name)
        write_task_instances(root, task.name, data.instances, labels)
        task.counts = {s: labels.count(s) for s in ("train", "validation", "test")} | {"total": len(labels)}
        apply_descriptions(root, task)
    check_disjoint_sources(tasks)
    _remove_stale(root, {t.name for t in tasks})
    meta = {
        "sources": sources,
        "tokenizer": config.tokenizer,
        "budget": asdict(config.budget),
        "seed": config.seed,
        "unseen_fraction": config.unseen_fraction,
        "evals_unseen_fraction": config.evals_unseen_fraction,
        "unseen_sources": sorted(config.unseen_sources) if config.unseen_sources else None,
        "problems": builder.problems,
    }
    write_index(root, tasks, meta=meta, dropped=builder.dropped)
    return PrepareReport(root=root, tasks=sorted(tasks, key=lambda t: t.name),
                         dropped=sorted(builder.dropped, key=lambda d: d["name"]),
                         problems=builder.problems)


def _split(tasks: list[Task], config: PrepareConfig) -> dict[str, str]:
    """Seen/unseen by source family. The evals registry is split on its own, so that adding it leaves the split
    of the other sources as it was (tasks that earlier checkpoints never trained on stay unseen)."""
    groups: dict[bool, list[Task]] = {False: [], True: []}
    for task in tasks:
        groups[task.origin == evals_registry.ORIGIN].append(task)
    sides: dict[str, str] = {}
    for is_evals, group in groups.items():
        if not group:
            continue
        explicit = None
        if config.unseen_sources is not None:
            families = {t.source for t in group}
            explicit = [s for s in config.unseen_sources if s in families]
        fraction = config.evals_unseen_fraction if is_evals else config.unseen_fraction
        sides.update(split_tasks(group, unseen_fraction=fraction, seed=config.seed, unseen_sources=explicit))
    if config.unseen_sources is not None:
        unknown = set(config.unseen_sources) - {t.source for t in tasks}
        if unknown:
            raise Text2LoraError(f"unknown source(s) for the unseen split: {', '.join(sorted(unknown))}")
    return sides


def _remove_stale(root: Path, names: set[str]) -> None:
    folder = root / "tasks"
    for path in folder.glob("*.jsonl"):
        if path.stem not in names:
            path.unlink()
    for tmp in folder.glob(".tmp-*"):
        if tmp.is_file():
            tmp.unlink()
        else:
            shutil.rmtree(tmp, ignore_errors=True)

