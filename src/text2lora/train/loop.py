"""The one training loop. SFT, reconstruction and the LoRA baselines differ only in their :class:`Recipe`.

Built on accelerate: one process on CPU, ``torchrun --nproc_per_node 2`` for two CPU processes (gloo), or GPUs
with bf16, from the same config. Exactly resumable: the batch at step ``s`` is a pure function of (seed, s, rank),
dropout is reseeded from (seed, s, rank) every step, and checkpoints hold weights, optimiser, scheduler and RNG.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from text2lora.errors import Text2LoraError
from text2lora.paths import write_json
from text2lora.train.config import LoopConfig
from text2lora.train.metrics_log import MetricLogger, plot_curves
from text2lora.train.state import (
    clean_run_dir,
    latest_checkpoint,
    list_checkpoints,
    load_training_checkpoint,
    prune_checkpoints,
    save_training_checkpoint,
)

log = logging.getLogger(__name__)


class Recipe(Protocol):
    """What a training recipe provides to the loop."""

    primary_metric: str  #: the validation metric (lower is better) that picks the best checkpoint

    def trainable(self) -> torch.nn.Module: ...
    def batch(self, step: int, rank: int, world: int) -> Any: ...
    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]: ...
    #: ``step``: the step being validated (None when called outside the loop)
    def evaluate(self, model: torch.nn.Module, step: int | None = None) -> dict[str, float]: ...
    def export(self, model: torch.nn.Module, out_dir: Path) -> None: ...


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    best_step: int | None
    best: float | None
    final_metrics: dict[str, float]


def linear_schedule(steps: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = int(steps * warmup_ratio)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return factor


def step_seed(seed: int, step: int, rank: int) -> int:
    digest = hashlib.sha256(f"{seed}/{step}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


#: Execution details a resumed run may change (threads, loggers, how often it saves, keeps and logs): they do not
#: change what is computed (data order and dropout are seeded by the step, not by what ran before). The task
#: library's path is one too: the CLI fingerprints its content (``library_index_sha256``), so a library named
#: ``null`` (the default) and by its full path, or moved, resumes alike. ``eval_every`` is not one: it decides which
#: steps can become ``best/``.
_NOT_FINGERPRINTED = {"loop": ("threads", "num_threads", "log_with", "compile", "save_every", "keep_last",
                               "log_every"), "data": ("library",)}
#: Settings added after runs existed, with the value that reproduces the older behaviour: a run saved before a
#: setting existed resumes as long as the setting keeps that value.
_ADDED_LATER = {"data": {"shots_max": 4, "shots_zero_prob": 0.25, "val_shots": 3, "shots_only_prob": 0.0},
                "gen_val": {"shots": 3},
                "": {"init_lora": None, "copy_downweight": 0.0}}  # "": top-level keys


#: Sections that only add validation metrics, with the key and value under which they leave the choice of the best
#: checkpoint alone: then they are not fingerprinted, so a run may start or stop reporting them when it resumes, and
#: a run saved before the section existed resumes.
_REPORT_ONLY = {"gen_val": ("select_by", "loss")}


def _fingerprinted(config: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    for section, keys in _NOT_FINGERPRINTED.items():
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k not in keys}
    for section, defaults in _ADDED_LATER.items():
        if section == "":
            out = {k: v for k, v in out.items() if k not in defaults or defaults[k] != v}
        elif isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k not in defaults or defaults[k] != v}
    for section, (key, neutral) in _REPORT_ONLY.items():
        value = out.get(section)
        if value is None or (isinstance(value, dict) and value.get(key, neutral) == neutral):
            out.pop(section, None)
    return out


def config_fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(_fingerprinted(config), sort_keys=True).encode()).hexdigest()[:16]


def run_config(cfg, library_root, *, uses_descriptions: bool = True, **extra) -> dict[str, Any]:
    """The resolved config plus a fingerprint of the task library: resuming on changed data (another split, other
    instances; new descriptions when the recipe reads them) is then refused like a changed config."""
    from text2lora.data.library import library_fingerprint
    from text2lora.train.config import config_to_dict

    return {**config_to_dict(cfg), "library_index_sha256": library_fingerprint(
        library_root, with_descriptions=uses_descriptions), **extra}


def check_resume_config(out_dir: Path, config: dict[str, Any]) -> Path | None:
    """The checkpoint to resume from, after checking it was made with this config (and data); None when
    ``out_dir`` holds none yet (a run killed before its first checkpoint): the run then starts afresh."""
    from text2lora.paths import read_json

    point = latest_checkpoint(Path(out_dir))
    if point is None:
        return None
    saved = read_json(point / "config.json", "checkpoint config")
    if config_fingerprint(saved) != config_fingerprint(config):
        a, b = _fingerprinted(saved), _fingerprinted(config)
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise Text2LoraError(f"{point} was made with another config (differs in: {', '.join(changed)}); refusing to resume")
    return point


def check_out_dir(out_dir: Path, resume: bool) -> None:
    """Create and probe the run directory; refuse to start a second run in it without ``resume``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Text2LoraError(f"cannot create output directory {out_dir}: {e.strerror or e}") from None
    probe = out_dir / ".write-test"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise Text2LoraError(f"output directory {out_dir} is not writable: {e.strerror or e}") from None
    if not resume and list_checkpoints(out_dir):
        raise Text2LoraError(f"{out_dir} already holds a training run: pass {{resume}} to continue it, or another {{out}}")


@dataclass
class TrainerState:
    """The loop's mutable state: exactly what ``trainer.json`` holds in every checkpoint."""

    step: int = 0
    best: float = math.inf  #: best value of the recipe's primary metric so far (lower is better)
    best_step: int | None = None
    bad_evals: int = 0  #: evaluations since the best one (early stopping)
    fingerprint: str = ""  #: of the run's config (a resume must match it)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "best": self.best if math.isfinite(self.best) else None,
                "best_step": self.best_step, "bad_evals": self.bad_evals, "fingerprint": self.fingerprint}

    @classmethod
    def from_json(cls, obj: dict[str, Any], fingerprint: str) -> TrainerState:
        best = obj.get("best")
        if not (best is None or (isinstance(best, (int, float)) and not isinstance(best, bool))):
            raise Text2LoraError(f"trainer.json: best must be a number or null, got {type(best).__name__}")
        return cls(step=obj["step"], best=math.inf if best is None else best, best_step=obj.get("best_step"),
                   bad_evals=obj.get("bad_evals", 0), fingerprint=fingerprint)

    @property
    def best_or_none(self) -> float | None:
        return self.best if math.isfinite(self.best) else None


class Trainer:
    """One run of the loop: :meth:`step` optimises, :meth:`evaluate` validates (and exports ``best/``),
    :meth:`save` checkpoints, :meth:`finish` exports ``final/`` and the summary. :func:`train` drives it."""

    def __init__(self, recipe: Recipe, loop: LoopConfig, out_dir: Path, config: dict[str, Any], *,
                 resume: bool, accelerator) -> None:
        self.recipe, self.loop, self.out_dir, self.config = recipe, loop, out_dir, config
        self.accelerator = accelerator
        self.main = accelerator.is_main_process
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        if self.main:
            check_out_dir(out_dir, resume)
            clean_run_dir(out_dir)
        accelerator.wait_for_everyone()
        model = recipe.trainable()
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise Text2LoraError("nothing to train: the recipe's model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(self.params, lr=loop.lr, weight_decay=loop.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, linear_schedule(loop.steps, loop.warmup_ratio))
        self.state = TrainerState(fingerprint=config_fingerprint(config))
        point = check_resume_config(out_dir, config) if resume else None
        if point is not None:
            saved = load_training_checkpoint(point, model=model, optimizer=self.optimizer, scheduler=self.scheduler)
            self.state = TrainerState.from_json(saved, self.state.fingerprint)
            if self.main:
                log.warning("resuming from %s at step %d", point, self.state.step)
        elif resume and self.main:
            log.warning("no checkpoint in %s yet: starting the run from its config", out_dir)
        resume = point is not None
        self.model, self.optimizer = accelerator.prepare(model, self.optimizer)
        self.logger = MetricLogger(out_dir, enabled=self.main, truncate_after=self.state.step if resume else 0,
                                   backend=loop.log_with, config=config)

    def step(self) -> dict[str, float]:
        """One optimiser step; returns its metrics (loss, lr, grad norm, tokens/s, ...)."""
        acc, state = self.accelerator, self.state
        torch.manual_seed(step_seed(self.loop.seed, state.step, self.rank))
        t0 = time.perf_counter()
        batch = self.recipe.batch(state.step, self.rank, self.world)
        with acc.autocast():
            loss, metrics = self.recipe.loss(self.model, batch)
        acc.backward(loss)
        grad_norm = acc.clip_grad_norm_(self.params, self.loop.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        elapsed = time.perf_counter() - t0
        loss_value = acc.gather(loss.detach()[None]).float().mean().item()
        tokens = metrics.pop("tokens", 0.0) * self.world
        return {"loss": loss_value, "lr": self.scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0, "step_s": elapsed, **metrics}

    def evaluate(self) -> dict[str, float]:
        """Validation metrics at the current step; a new best is exported to ``best/``."""
        self.model.eval()
        with torch.no_grad():
            metrics = self.recipe.evaluate(self.model, step=self.state.step)
        self.model.train()
        if self.main:
            self.logger.log(self.state.step, metrics)
            score = metrics.get(self.recipe.primary_metric, math.inf)
            if score < self.state.best:
                self.state.best, self.state.best_step, self.state.bad_evals = score, self.state.step, 0
                self.recipe.export(self.accelerator.unwrap_model(self.model), self.out_dir / "best")
            else:
                self.state.bad_evals += 1
        return metrics

    def should_stop_early(self) -> bool:
        patience = self.loop.early_stop_patience
        return patience is not None and self.state.bad_evals >= patience

    def save(self) -> None:
        if self.main:
            save_training_checkpoint(self.out_dir / f"ckpt-{self.state.step:07d}",
                                     model=self.accelerator.unwrap_model(self.model), optimizer=self.optimizer,
                                     scheduler=self.scheduler, trainer=self.state.to_json(), config=self.config)
            prune_checkpoints(self.out_dir, self.loop.keep_last)
        self.accelerator.wait_for_everyone()

    def finish(self, stopped_early: bool) -> TrainResult:
        final = self.evaluate() if not stopped_early else {}
        if not stopped_early:
            self.save()
        state = self.state
        if self.main:
            self.recipe.export(self.accelerator.unwrap_model(self.model), self.out_dir / "final")
            write_json(self.out_dir / "summary.json", {
                "steps": state.step, "best_step": state.best_step, "best": state.best_or_none,
                "primary_metric": self.recipe.primary_metric, "final": final, "early_stopped": stopped_early})
            plot_curves(self.out_dir)
            self.logger.close()
        self.accelerator.wait_for_everyone()
        return TrainResult(self.out_dir, state.step, state.best_step, state.best_or_none, final)


def train(
    recipe: Recipe,
    loop: LoopConfig,
    out_dir: str | Path,
    config: dict[str, Any],
    *,
    resume: bool = False,
    accelerator=None,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Run (or resume) training; checkpoints, metrics and the exported artifacts go to ``out_dir``.

    ``stop_after`` ends the process's work after that many steps of this call (tests use it to mimic a kill).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    if loop.threads:
        torch.set_num_threads(loop.threads)
    if accelerator is None:
        on_gpu = torch.cuda.is_available()
        accelerator = Accelerator(cpu=not on_gpu, mixed_precision=loop.precision if on_gpu else "no")
    run = Trainer(recipe, loop, Path(out_dir), config, resume=resume, accelerator=accelerator)
    run.model.train()
    if run.state.step == 0:
        run.evaluate()
    bar = tqdm(total=loop.steps, initial=run.state.step, disable=not (run.main and progress), dynamic_ncols=True,
               desc="train")
    done_here, stopped_early, metrics = 0, False, {}
    while run.state.step < loop.steps:
        metrics = run.step()
        step, done_here = run.state.step, done_here + 1
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{metrics['lr']:.2e}", tok_s=f"{metrics['tokens_per_s']:.0f}")
        if step % loop.log_every == 0 or step == loop.steps:
            run.logger.log(step, metrics)
        if step % loop.eval_every == 0 and step < loop.steps:
            run.evaluate()
            if run.should_stop_early():
                stopped_early = True
                if run.main:
                    log.warning("early stop at step %d: no better %s for %d evaluations", step,
                                recipe.primary_metric, run.state.bad_evals)
                run.save()
                break
        if step % loop.save_every == 0 and step < loop.steps:
            run.save()
        if stop_after is not None and done_here >= stop_after:
            bar.close()
            return TrainResult(run.out_dir, step, run.state.best_step, run.state.best, metrics)
    bar.close()
    return run.finish(stopped_early)
