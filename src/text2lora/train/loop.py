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
    find_resume_point,
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
    def evaluate(self, model: torch.nn.Module) -> dict[str, float]: ...
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


#: Execution details a resumed run may change (threads, loggers): they do not change what is computed. The task
#: library's path is one too: the CLI fingerprints its content (``library_index_sha256``), so a library named
#: ``null`` (the default) and by its full path, or moved, resumes alike.
_NOT_FINGERPRINTED = {"loop": ("num_threads", "log_with"), "data": ("library",)}


def _fingerprinted(config: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    for section, keys in _NOT_FINGERPRINTED.items():
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k not in keys}
    return out


def config_fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(_fingerprinted(config), sort_keys=True).encode()).hexdigest()[:16]


def check_resume_config(out_dir: Path, config: dict[str, Any]) -> Path:
    """The checkpoint to resume from, after checking it was made with this config (and data)."""
    from text2lora.paths import read_json

    point = find_resume_point(Path(out_dir))
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
        raise Text2LoraError(f"{out_dir} already holds a training run: pass --resume to continue it, or another --out")


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

    out_dir = Path(out_dir)
    if loop.num_threads:
        torch.set_num_threads(loop.num_threads)
    if accelerator is None:
        on_gpu = torch.cuda.is_available()
        accelerator = Accelerator(cpu=not on_gpu, mixed_precision=loop.precision if on_gpu else "no")
    main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    if main:
        check_out_dir(out_dir, resume)
    accelerator.wait_for_everyone()

    model = recipe.trainable()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise Text2LoraError("nothing to train: the recipe's model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=loop.lr, weight_decay=loop.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(loop.steps, loop.warmup_ratio))

    start, best, best_step, bad_evals, history = 0, math.inf, None, 0, []
    fingerprint = config_fingerprint(config)
    if resume:
        point = check_resume_config(out_dir, config)
        state = load_training_checkpoint(point, model=model, optimizer=optimizer, scheduler=scheduler)
        start, best, best_step = state["step"], state.get("best", math.inf), state.get("best_step")
        bad_evals = state.get("bad_evals", 0)
        if main:
            log.warning("resuming from %s at step %d", point, start)
    model, optimizer = accelerator.prepare(model, optimizer)

    logger = MetricLogger(out_dir, enabled=main, truncate_after=start if resume else 0, backend=loop.log_with,
                          config=config)

    def evaluate(step: int) -> dict[str, float]:
        nonlocal best, best_step, bad_evals
        model.eval()
        with torch.no_grad():
            metrics = recipe.evaluate(model)
        model.train()
        if main:
            logger.log(step, metrics)
            score = metrics.get(recipe.primary_metric, math.inf)
            if score < best:
                best, best_step, bad_evals = score, step, 0
                recipe.export(accelerator.unwrap_model(model), out_dir / "best")
            else:
                bad_evals += 1
        return metrics

    def save(step: int) -> None:
        if main:
            trainer = {"step": step, "best": best if math.isfinite(best) else None, "best_step": best_step,
                       "bad_evals": bad_evals, "fingerprint": fingerprint}
            save_training_checkpoint(out_dir / f"ckpt-{step:07d}", model=accelerator.unwrap_model(model),
                                     optimizer=optimizer, scheduler=scheduler, trainer=trainer, config=config)
            prune_checkpoints(out_dir, loop.keep_last)
        accelerator.wait_for_everyone()

    if best is None:
        best = math.inf
    model.train()
    if start == 0:
        history.append(evaluate(0))
    bar = tqdm(total=loop.steps, initial=start, disable=not (main and progress), dynamic_ncols=True, desc="train")
    step, done_here, stopped_early = start, 0, False
    last_metrics: dict[str, float] = {}
    while step < loop.steps:
        torch.manual_seed(step_seed(loop.seed, step, rank))
        t0 = time.perf_counter()
        batch = recipe.batch(step, rank, world)
        with accelerator.autocast():
            loss, metrics = recipe.loss(model, batch)
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(params, loop.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        done_here += 1
        elapsed = time.perf_counter() - t0
        loss_value = accelerator.gather(loss.detach()[None]).float().mean().item()
        tokens = metrics.pop("tokens", 0.0) * world
        last_metrics = {"loss": loss_value, "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                        "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0, "step_s": elapsed, **metrics}
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{last_metrics['lr']:.2e}", tok_s=f"{last_metrics['tokens_per_s']:.0f}")
        if step % loop.log_every == 0 or step == loop.steps:
            logger.log(step, last_metrics)
        if step % loop.eval_every == 0 and step < loop.steps:
            evaluate(step)
            if loop.early_stop_patience is not None and bad_evals >= loop.early_stop_patience:
                stopped_early = True
                if main:
                    log.warning("early stop at step %d: no better %s for %d evaluations", step,
                                recipe.primary_metric, bad_evals)
                save(step)
                break
        if step % loop.save_every == 0 and step < loop.steps:
            save(step)
        if stop_after is not None and done_here >= stop_after:
            bar.close()
            return TrainResult(out_dir, step, best_step, best, last_metrics)
    bar.close()
    final = evaluate(step) if not stopped_early else {}
    if not stopped_early:
        save(step)
    if main:
        recipe.export(accelerator.unwrap_model(model), out_dir / "final")
        summary = {"steps": step, "best_step": best_step, "best": best if math.isfinite(best) else None,
                   "primary_metric": recipe.primary_metric, "final": final, "early_stopped": stopped_early}
        write_json(out_dir / "summary.json", summary)
        plot_curves(out_dir)
        logger.close()
    accelerator.wait_for_everyone()
    return TrainResult(out_dir, step, best_step, best if math.isfinite(best) else None, final)
