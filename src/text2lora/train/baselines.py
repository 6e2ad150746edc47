"""PEFT LoRA baselines: one "oracle" LoRA per task, or one multi-task LoRA over all training tasks.

Both are written as PEFT adapter directories into a LoRA library (``<library>/<task>/`` and
``<library>/_multitask/``), which reconstruction training and evaluation read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from text2lora.data.library import TaskLibrary
from text2lora.models.base import default_device, load_base_model
from text2lora.paths import atomic_dir, remove_stale_temporaries
from text2lora.train.config import LoraTrainConfig
from text2lora.train.data import TrainData
from text2lora.train.losses import grouped_completion_loss
from text2lora.train.sft import model_dtype

MULTITASK = "_multitask"


def peft_model_for(model, cfg: LoraTrainConfig):
    """``model`` wrapped with the config's LoRA, its A factors initialised from ``cfg.loop.seed``.

    PEFT draws A from torch's global generator; the draw happens inside a forked RNG seeded with the run's seed,
    so two runs of one config start from the same weights and the caller's RNG state is left as it was."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, use_rslora=cfg.use_rslora,
                        target_modules=list(cfg.targets), bias="none", task_type="CAUSAL_LM")
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):  # manual_seed seeds every CUDA device too: restore them all
        torch.manual_seed(cfg.loop.seed)
        return get_peft_model(model, config)


class LoraRecipe:
    primary_metric = "val_loss"

    def __init__(self, cfg: LoraTrainConfig, tasks: list[str], *, library: TaskLibrary | None = None,
                 model=None, tokenizer=None) -> None:
        self.cfg = cfg
        device = default_device()
        if model is None:
            model, tokenizer = load_base_model(cfg.base_model, dtype=model_dtype(cfg.loop.precision), device=device)
        self.tokenizer = tokenizer
        self.library = library or TaskLibrary.load(cfg.data.library)
        selected = [self.library.task(t) for t in tasks]
        data_cfg = cfg.data
        if len(selected) == 1:  # one task: the whole batch from it
            from dataclasses import replace

            data_cfg = replace(cfg.data, tasks_per_batch=1,
                               examples_per_task=cfg.data.tasks_per_batch * cfg.data.examples_per_task)
        self.data = TrainData(self.library, tokenizer, data_cfg, seed=cfg.loop.seed, use_descriptions=False,
                              tasks=selected)
        self.peft_model = peft_model_for(model, cfg)
        self.val_sets = self.data.val_sets()

    def trainable(self) -> torch.nn.Module:
        return self.peft_model

    def batch(self, step: int, rank: int, world: int) -> dict:
        return self.data.batch(step, rank, world)

    def _to_device(self, batch: dict) -> dict:
        device = next(self.peft_model.parameters()).device
        return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}

    def loss(self, model, batch: dict):
        batch = self._to_device(batch)
        loss = grouped_completion_loss(model, batch).mean()
        return loss, {"tokens": float(batch["attention_mask"].sum())}

    def evaluate(self, model, step: int | None = None) -> dict[str, float]:
        out = {}
        for val in self.val_sets:
            losses = [grouped_completion_loss(model, self._to_device(b)) for b in self.data.val_batches(val.refs)]
            out[val.name] = torch.cat(losses).mean().item()
        return out

    def export(self, model, out_dir: Path) -> None:
        with atomic_dir(out_dir) as tmp:
            model.save_pretrained(str(tmp))


def install_adapter(run_dir: Path, library_dir: Path, name: str) -> Path:
    """Copy a run's best adapter (or its final one) into the LoRA library as ``<library>/<name>``."""
    source = run_dir / "best" if (run_dir / "best" / "adapter_config.json").is_file() else run_dir / "final"
    target = Path(library_dir) / name
    remove_stale_temporaries(library_dir, [name])  # an install killed before its rename
    with atomic_dir(target) as tmp:
        for f in source.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
    return target


def train_baselines(cfg: LoraTrainConfig, out: Path, *, tasks: list[str] | None = None, resume: bool = False,
                    echo=print) -> list[Path]:
    """Train one LoRA per task of ``tasks``, or (``tasks`` None) one multi-task LoRA on the config's training
    tasks, each in ``<out>/.runs/<name>`` (resumable), and install each into the LoRA library ``out``."""
    from text2lora.train.data import select_tasks
    from text2lora.train.loop import run_config, train

    library = TaskLibrary.load(cfg.data.library)
    jobs = [(t, [t]) for t in tasks] if tasks else [(MULTITASK, [t.name for t in select_tasks(library, cfg.data)])]
    for _, names in jobs:
        for name in names:
            library.task(name)  # unknown names fail before any training
    paths = []
    for name, names in jobs:
        model, tokenizer = load_base_model(cfg.base_model, dtype=model_dtype(cfg.loop.precision),
                                           device=default_device())
        recipe = LoraRecipe(cfg, names, library=library, model=model, tokenizer=tokenizer)
        run_dir = out / ".runs" / name
        config = run_config(cfg, cfg.data.library, uses_descriptions=False, tasks=names)  # a LoRA reads none
        result = train(recipe, cfg.loop, run_dir, config,
                       resume=resume and run_dir.exists())
        paths.append(install_adapter(run_dir, out, name))
        echo(f"{name}: {result.steps} steps, best val_loss {result.best} at step {result.best_step} -> {paths[-1]}")
    return paths
