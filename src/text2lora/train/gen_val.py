"""Generation-based validation for SFT: does the hypernetwork being trained write adapters that *do* unseen tasks,
or adapters that echo the input?

At the evaluations :class:`GenValConfig` chooses, every chosen task's adapter is generated from its own description
(``task.description``) by the hypernetwork in eval mode, its first ``instances`` test prompts are built and decoded
greedily exactly as ``text2lora eval`` does it (:func:`text2lora.eval.scoring.build_request` and
:func:`~text2lora.eval.scoring.score_requests`), and scored with the same metrics: strict exact match (short
answers), ROUGE-L (long-form) or accuracy (multiple choice), and the copy rate. The base model without an adapter
is scored once per process, as the reference. :meth:`GenValidator.evaluate` returns, all in [0, 1]:

* ``gen_score``: the mean headline score over the tasks; ``gen_copy_rate``: the share of generation answers that
  repeat their input (whitespace aside); ``gen_base_score`` and ``gen_base_copy_rate``: the same for the base model;
* with ``select_by: gen_score``, ``gen_error`` = 1 - ``gen_score``: the primary metric (the loop keeps the lowest);
* for a hypernetwork that reads worked examples (and ``shots`` > 0): ``gen_shots_score`` and ``gen_shots_copy_rate``,
  the same tasks with adapters generated from the description and ``shots`` examples per task (``t2l+shots``: the
  shots ``text2lora eval`` gives ``icl3``), none of them in the prompt. The choice of ``best/`` stays on ``gen_score``.

Each evaluation also appends a row per model (``t2l``, ``t2l+shots`` with examples, and ``base`` the first time)
to ``gen_val.jsonl`` in the run directory: the scores and copy rates per task and per source family, and the
predictions, so one can see which families collapse. A resumed run rewrites the rows after its checkpoint, as ``metrics.jsonl`` does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from text2lora.data.library import TaskLibrary
from text2lora.data.task import MULTIPLE_CHOICE
from text2lora.errors import Text2LoraError
from text2lora.eval.tasks import EvalTask
from text2lora.lora import LoraWeights
from text2lora.train.config import GenValConfig

log = logging.getLogger(__name__)

FILENAME = "gen_val.jsonl"
#: predictions kept per task in gen_val.jsonl are cut to this many characters
_PREDICTION_CHARS = 200


def gen_val_tasks(cfg: GenValConfig, library: TaskLibrary) -> list[EvalTask]:
    """The tasks to score: the benchmark's ``split`` side (checked against the library) or the ``tasks`` selector,
    the first ``max_tasks`` by name, each with its first ``instances`` test instances."""
    from text2lora.eval.tasks import select_library_tasks

    selector = cfg.tasks
    if cfg.benchmark is not None:
        from text2lora.eval.benchmark import check_benchmark
        from text2lora.paths import read_json

        path = Path(cfg.benchmark)
        if not path.is_file():
            raise Text2LoraError(f"gen_val.benchmark: no benchmark file at {path}")
        names = check_benchmark(read_json(path, "benchmark"), library, cfg.split)
        if not names:
            raise Text2LoraError(f"gen_val.benchmark {path} has no {cfg.split} tasks")
        selector = ",".join(sorted(names))
    etasks = select_library_tasks(library, selector, None, cfg.instances)
    etasks.sort(key=lambda t: t.name)
    return etasks[: cfg.max_tasks] if cfg.max_tasks else etasks


@dataclass
class TaskScore:
    """One task's result in one evaluation."""

    task: str
    family: str  #: the task's source family
    metric: str  #: "generation" or "multiple_choice"
    headline: str  #: strict_exact_match, rouge_l or accuracy
    score: float
    n: int
    copies: int | None = None  #: generation: answers that repeat their input
    predictions: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {"family": self.family, "metric": self.metric, "headline": self.headline, "score": self.score,
               "n": self.n}
        if self.copies is not None:
            out["copy_rate"] = self.copies / self.n
            out["predictions"] = [p[:_PREDICTION_CHARS] for p in self.predictions]
        return out


def summarize(scores: list[TaskScore]) -> dict[str, Any]:
    """The mean headline score over the tasks and the copy rate pooled over generation answers, overall and per
    family (a family without generation tasks has no copy rate)."""

    def pooled(items: list[TaskScore]) -> dict[str, Any]:
        gen = [s for s in items if s.copies is not None]
        out: dict[str, Any] = {"tasks": len(items), "score": sum(s.score for s in items) / len(items)}
        if gen:
            out["copy_rate"] = sum(s.copies for s in gen) / sum(s.n for s in gen)
        return out

    families: dict[str, list[TaskScore]] = defaultdict(list)
    for s in scores:
        families[s.family].append(s)
    return {**pooled(scores), "families": {f: pooled(items) for f, items in sorted(families.items())}}


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """``module`` in eval mode without gradients; its train/eval mode is restored afterwards."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def _is_main_process() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class GenValLog:
    """Rows appended to ``run_dir/gen_val.jsonl``; the first write of a process drops rows at or after its step (a
    resumed run's evaluations after its checkpoint, left by the process that was killed)."""

    def __init__(self, run_dir: Path | None) -> None:
        self.path = Path(run_dir) / FILENAME if run_dir is not None else None
        self._fresh = True

    def write(self, row: dict[str, Any]) -> None:
        if self.path is None or not _is_main_process():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._fresh:
            self._fresh = False
            kept = [r for r in read_gen_val(self.path.parent) if r["step"] < row["step"]]
            if kept or self.path.exists():
                from text2lora.paths import atomic_write_text

                atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def read_gen_val(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``run_dir/gen_val.jsonl`` (a line a kill cut short is skipped)."""
    path = Path(run_dir) / FILENAME
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


class GenValidator:
    """Scores the tasks of a :class:`GenValConfig` with generated adapters and once with the base model."""

    def __init__(self, cfg: GenValConfig, library: TaskLibrary, tokenizer, encoder, *, base_model: str,
                 eval_every: int, steps: int, run_dir: Path | None = None, trained: set[str] | None = None) -> None:
        from text2lora.eval.config import EvalSettings
        from text2lora.eval.methods import PLAIN, Unit
        from text2lora.eval.scoring import build_request

        self.cfg, self.tokenizer = cfg, tokenizer
        self.eval_every, self.steps = eval_every, steps
        self.tasks = gen_val_tasks(cfg, library)
        overlap = sorted({t.name for t in self.tasks} & (trained or set()))
        if overlap:
            log.warning("gen_val scores %d tasks the run trains on (%s): its scores are not unseen-task scores",
                        len(overlap), ", ".join(overlap[:5]))
        settings = EvalSettings(base_model=base_model, max_instances=cfg.instances, max_new_tokens=cfg.max_new_tokens,
                                max_prompt_tokens=cfg.max_prompt_tokens)
        self.descriptions = [t.task.description for t in self.tasks]
        self.requests = [build_request(tokenizer, t, Unit("t2l", "", t.name, d, PLAIN), settings)
                         for t, d in zip(self.tasks, self.descriptions)]
        self.embeddings = encoder.encode(self.descriptions, label="validation task description")  # frozen encoder
        self.examples = self._task_examples(cfg.shots)
        self.log = GenValLog(run_dir)
        self.base: dict[str, Any] | None = None  #: the base model's summary, computed once
        self.base_runs = 0  #: how often the base model was scored (once per process)

    def _task_examples(self, k: int) -> list[list] | None:
        """Each task's ``k`` worked examples, as ``text2lora eval`` gives them to ``icl3`` (seed 0); None when
        ``k`` is 0 or a task has fewer than ``k`` instances outside the scored ones."""
        from text2lora.examples import example_from_instance

        if k < 1 or any(len(t.pool) < k for t in self.tasks):
            return None
        return [[example_from_instance(i) for i in t.shots(0, k, 0)] for t in self.tasks]

    @property
    def primary_metric(self) -> str | None:
        """``gen_error`` when the config chooses the best checkpoint by the generation score, else None."""
        return "gen_error" if self.cfg.select_by == "gen_score" else None

    def due(self, step: int | None) -> bool:
        """Whether the validation at ``step`` generates: every ``every``-th one, the first and the last."""
        if step is None or step == 0 or step >= self.steps:
            return True
        return step % (self.eval_every * self.cfg.every) == 0

    def score(self, model, adapters: list[LoraWeights] | None) -> list[TaskScore]:
        """Every task scored with its adapter (``adapters[i]`` for task i), or with none."""
        from text2lora.eval.scoring import score_requests

        results: dict[int, dict[str, Any]] = {}
        score_requests(model, self.tokenizer, self.requests, adapters, batch_size=self.cfg.batch_size,
                       max_new_tokens=self.cfg.max_new_tokens, on_done=lambda i, s, _: results.__setitem__(i, s),
                       progress=False, desc="gen_val")
        out = []
        for i, etask in enumerate(self.tasks):
            s = results[i]
            generation = etask.metric != MULTIPLE_CHOICE
            out.append(TaskScore(etask.name, etask.task.source, etask.metric, s["headline"], s["score"], s["n"],
                                 int(sum(s["per_instance_copy"])) if generation else None,
                                 s["predictions"] if generation else []))
        return out

    def evaluate(self, model, hypernet: torch.nn.Module, make_lora: Callable[[torch.Tensor], LoraWeights],
                 step: int | None,
                 make_lora_with_examples: Callable[[torch.Tensor, list[list]], LoraWeights] | None = None,
                 ) -> dict[str, float]:
        """The gen_* metrics of ``hypernet`` (``make_lora`` turns description embeddings into adapters;
        ``make_lora_with_examples``, given for a hypernetwork that reads examples, turns embeddings and each task's
        examples into adapters), rows in gen_val.jsonl when ``step`` is known; the base model is scored the first
        time only."""
        t0 = time.perf_counter()
        emb = self.embeddings.to(next(hypernet.parameters()).device)
        t2l, ours = self._score_generated(model, hypernet, lambda: make_lora(emb))
        seconds = time.perf_counter() - t0
        if self.base is None:
            tb = time.perf_counter()
            base = self.score(model, None)
            self.base, self.base_runs = summarize(base), self.base_runs + 1
            self._write(step, "base", base, self.base, time.perf_counter() - tb)
        self._write(step, "t2l", t2l, ours, seconds)
        metrics = {"gen_score": ours["score"], "gen_base_score": self.base["score"]}
        if "copy_rate" in ours:
            metrics["gen_copy_rate"] = ours["copy_rate"]
            metrics["gen_base_copy_rate"] = self.base["copy_rate"]
        if make_lora_with_examples is not None and self.examples is not None:
            ts = time.perf_counter()
            shots, with_shots = self._score_generated(model, hypernet,
                                                      lambda: make_lora_with_examples(emb, self.examples))
            self._write(step, "t2l+shots", shots, with_shots, time.perf_counter() - ts)
            metrics["gen_shots_score"] = with_shots["score"]
            if "copy_rate" in with_shots:
                metrics["gen_shots_copy_rate"] = with_shots["copy_rate"]
            log.info("gen_val%s with %d examples a task: score %.3f, copy rate %s", f" at step {step}"
                     if step is not None else "", self.cfg.shots, with_shots["score"],
                     _rate(with_shots.get("copy_rate")))
        if self.primary_metric is not None:
            metrics[self.primary_metric] = 1.0 - ours["score"]
        log.info("gen_val%s: score %.3f, copy rate %s (base %.3f, %s) on %d tasks in %.0f s",
                 f" at step {step}" if step is not None else "", ours["score"], _rate(ours.get("copy_rate")),
                 self.base["score"], _rate(self.base.get("copy_rate")), len(self.tasks), time.perf_counter() - t0)
        return metrics

    def _score_generated(self, model, hypernet: torch.nn.Module, make: Callable[[], LoraWeights]
                         ) -> tuple[list[TaskScore], dict[str, Any]]:
        """Every task scored with its adapter from ``make()`` (the hypernetwork in eval mode), and the summary."""
        with eval_mode(hypernet):
            lora = make()
        scores = self.score(model, [lora.select(i) for i in range(len(self.tasks))])
        return scores, summarize(scores)

    def _write(self, step: int | None, model: str, scores: list[TaskScore], summary: dict[str, Any],
               seconds: float) -> None:
        if step is not None:
            self.log.write({"step": step, "model": model, "seconds": round(seconds, 2), **summary,
                            "tasks": {s.task: s.to_json() for s in scores}})


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
