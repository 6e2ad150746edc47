"""Training checkpoints: trainable weights, optimiser, scheduler, RNG and sampler state, written atomically.

A checkpoint is a directory ``ckpt-0000100`` holding only safetensors and JSON:
  ``trainable.safetensors`` (the trainable parameters), ``optimizer.safetensors`` + ``optimizer.json``
  (tensor state / param groups and scalars), ``rng.safetensors`` + ``rng.json``, ``trainer.json`` (step, best
  score, recipe state such as the sampler's) and ``config.json`` (the resolved config). Written under a temporary
  name and renamed, so a kill leaves the previous checkpoint intact and never a half-written one.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch

from text2lora.errors import Text2LoraError
from text2lora.paths import atomic_dir, read_json, write_json

CKPT_PREFIX = "ckpt-"


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
    """Restore everything into the given objects; return ``trainer.json``."""
    from safetensors.torch import load_file

    try:
        load_trainable_state(model, load_file(str(path / "trainable.safetensors")))
        optimizer.load_state_dict(
            _join_optimizer(load_file(str(path / "optimizer.safetensors")), read_json(path / "optimizer.json"))
        )
        scheduler.load_state_dict(read_json(path / "scheduler.json"))
        torch.set_rng_state(load_file(str(path / "rng.safetensors"))["torch"])
        version, internal, gauss = read_json(path / "rng.json")["python"]
        random.setstate((version, tuple(internal), gauss))
    except FileNotFoundError as e:
        raise Text2LoraError(f"incomplete checkpoint {path}: {e.filename} is missing") from None
    return read_json(path / "trainer.json", "trainer state")


def list_checkpoints(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob(f"{CKPT_PREFIX}*") if p.is_dir() and (p / "trainer.json").is_file())


def prune_checkpoints(run_dir: Path, keep_last: int) -> None:
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def find_resume_point(path: Path) -> Path:
    """``path`` is a checkpoint directory or a run directory (its latest checkpoint)."""
    if (path / "trainer.json").is_file():
        return path
    ckpts = list_checkpoints(path) if path.is_dir() else []
    if not ckpts:
        raise Text2LoraError(f"no checkpoint to resume from in {path}")
    return ckpts[-1]
