"""Training checkpoints: trainable weights, optimiser, scheduler, RNG and sampler state, written atomically.

A checkpoint is a directory ``ckpt-0000100`` holding only safetensors and JSON:
  ``trainable.safetensors`` (the trainable parameters), ``optimizer.safetensors`` + ``optimizer.json``
  (tensor state / param groups and scalars), ``rng.safetensors`` + ``rng.json``, ``trainer.json`` (step, best
  score, recipe state such as the sampler's) and ``config.json`` (the resolved config). Written under a temporary
  name and renamed, so a kill leaves the previous checkpoint intact and never a half-written one.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from text2lora.errors import Text2LoraError
from text2lora.paths import atomic_dir, read_json, remove_stale_temporaries, write_json

log = logging.getLogger(__name__)

CKPT_PREFIX = "ckpt-"
_CKPT_NAME = re.compile(r"^ckpt-\d{7}$")
#: What the loop writes into a run directory through atomic writes (their leftovers are ours to remove).
RUN_ARTIFACTS = ("best", "final", "summary.json", "loss.png")


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(state):
        missing = sorted(set(params) - set(state))
        raise Text2LoraError(f"checkpoint does not match the model (e.g. {(missing or sorted(set(state) - set(params)))[0]})")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state[n].to(p.device, p.dtype))


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for idx, slots in state["state"].items():
        scalars["state"][str(idx)] = {}
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars["state"][str(idx)][key] = value
    return tensors, scalars


def _join_optimizer(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in scalars["state"].items()}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": scalars["param_groups"]}


def save_training_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer: dict[str, Any],
    config: dict[str, Any],
) -> Path:
    from safetensors.torch import save_file

    opt_tensors, opt_scalars = _split_optimizer(optimizer.state_dict())
    with atomic_dir(path) as tmp:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        write_json(tmp / "optimizer.json", opt_scalars)
        write_json(tmp / "scheduler.json", scheduler.state_dict())
        save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        write_json(tmp / "rng.json", {"python": _py_state()})
        write_json(tmp / "trainer.json", trainer)
        write_json(tmp / "config.json", config)
    return path


def _py_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def load_training_checkpoint(path: Path, *, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore everything into the given objects; return ``trainer.json``. A missing, truncated or malformed
    file is one error naming it (the objects may be partly restored then: the caller does not go on)."""
    from text2lora.paths import read_safetensors

    def damaged(name: str, why: Any) -> Text2LoraError:
        return Text2LoraError(f"checkpoint {path} is damaged ({name}: {why}); delete it to resume from the "
                              "checkpoint before it (or from the start)")

    def tensors(name: str) -> dict[str, torch.Tensor]:
        try:
            return read_safetensors(path / name, "checkpoint file")
        except Text2LoraError as e:
            raise damaged(name, "missing" if not (path / name).is_file() else "unreadable") from e

    def scalars(name: str) -> Any:
        try:
            return read_json(path / name, "checkpoint file")
        except Text2LoraError as e:
            raise damaged(name, "missing" if not (path / name).is_file() else "not valid JSON") from e

    steps = [
        ("trainable.safetensors", lambda: load_trainable_state(model, tensors("trainable.safetensors"))),
        ("optimizer.json / optimizer.safetensors", lambda: optimizer.load_state_dict(
            _join_optimizer(tensors("optimizer.safetensors"), scalars("optimizer.json")))),
        ("scheduler.json", lambda: scheduler.load_state_dict(scalars("scheduler.json"))),
        ("rng.safetensors", lambda: torch.set_rng_state(tensors("rng.safetensors")["torch"])),
        ("rng.json", lambda: random.setstate(_py_state_from(scalars("rng.json")))),
    ]
    for name, restore in steps:
        try:
            restore()
        except Text2LoraError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as e:
            raise damaged(name, f"{type(e).__name__}: {str(e)[:120]}") from None
    trainer = scalars("trainer.json")
    if not isinstance(trainer, dict) or not isinstance(trainer.get("step"), int) or isinstance(trainer["step"], bool) \
            or trainer["step"] < 0:
        raise damaged("trainer.json", "no step count")
    return trainer


def _py_state_from(obj: Any) -> tuple:
    """Python's RNG state from ``rng.json``, checked (``random.setstate`` takes anything and fails later)."""
    version, internal, gauss = obj["python"]
    if not (isinstance(internal, list) and len(internal) == 625 and all(type(x) is int and 0 <= x < 2**32
                                                                        for x in internal[:624])):
        raise ValueError("not a Mersenne Twister state")
    return version, tuple(internal), gauss


def list_checkpoints(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob(f"{CKPT_PREFIX}*") if p.is_dir() and (p / "trainer.json").is_file())


def prune_checkpoints(run_dir: Path, keep_last: int) -> None:
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def clean_run_dir(run_dir: Path) -> list[Path]:
    """Remove what kills leave in a run directory: ``.tmp-*``/``.old-*`` leftovers of our atomic writes and
    checkpoint directories without ``trainer.json`` (a pruning cut short). Only names the loop writes are touched."""
    removed = remove_stale_temporaries(run_dir, RUN_ARTIFACTS, match=_CKPT_NAME.match)
    for p in run_dir.glob(f"{CKPT_PREFIX}*"):
        if _CKPT_NAME.match(p.name) and p.is_dir() and not p.is_symlink() and not (p / "trainer.json").is_file():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    if removed:
        log.warning("removed %d leftover(s) of an interrupted run in %s: %s", len(removed), run_dir,
                    ", ".join(sorted(p.name for p in removed)))
    return removed


def latest_checkpoint(path: Path) -> Path | None:
    """``path`` itself if it is a checkpoint directory, else the latest checkpoint of run directory ``path``."""
    if (path / "trainer.json").is_file():
        return path
    ckpts = list_checkpoints(path) if path.is_dir() else []
    return ckpts[-1] if ckpts else None


def find_resume_point(path: Path) -> Path:
    """Like :func:`latest_checkpoint`, but a missing checkpoint is an error."""
    point = latest_checkpoint(path)
    if point is None:
        raise Text2LoraError(f"no checkpoint to resume from in {path}")
    return point
