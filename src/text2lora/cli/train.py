"""`text2lora train sft | lora | recon`: thin wrappers over text2lora.train."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from text2lora.errors import Text2LoraError

app = typer.Typer(help="Train T2L (SFT or reconstruction) and the PEFT LoRA baselines.", no_args_is_help=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (see configs/); defaults otherwise.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key, e.g. --set loop.steps=500 (repeatable).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its latest checkpoint.")]


def _run_config(cfg, library_root, **extra) -> dict:
    """The resolved config plus a fingerprint of the task library's index: resuming on changed data (new
    descriptions, another split) is then refused like a changed config."""
    import hashlib

    from text2lora.data.library import INDEX, default_library_dir
    from text2lora.train.config import config_to_dict

    index = Path(library_root or default_library_dir()) / INDEX
    digest = hashlib.sha256(index.read_bytes()).hexdigest()[:16] if index.is_file() else None
    return {**config_to_dict(cfg), "library_index_sha256": digest, **extra}


def _check_run_dir(out: Path, resume: bool, run_config: dict) -> None:
    """Fail on an unusable --out or a mismatched --resume before any model loads."""
    from text2lora.train.loop import check_out_dir, check_resume_config

    check_out_dir(out, resume)
    if resume:
        check_resume_config(out, run_config)


def _overrides(items: list[str] | None) -> dict:
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise Text2LoraError(f"--set needs KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise Text2LoraError(f"--set {key}: cannot parse value {value!r}") from None
    return out


@app.command()
def sft(
    config: ConfigOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory: checkpoints, metrics, loss.png, best/ and final/.")] = Path("runs/sft"),
    resume: ResumeOpt = False,
    set_: SetOpt = None,
) -> None:
    """Train the hypernetwork end to end through the frozen base model on many tasks (T2L-SFT).

    Example: text2lora train sft --config configs/smollm2-sft.yaml --out runs/sft
    The trained hypernetwork is written to OUT/best (lowest validation loss) and OUT/final.
    """
    from text2lora.train.config import load_config
    from text2lora.train.loop import train
    from text2lora.train.sft import SFTRecipe

    cfg = load_config("sft", config, _overrides(set_))
    run_config = _run_config(cfg, cfg.data.library)
    _check_run_dir(out, resume, run_config)
    recipe = SFTRecipe(cfg, cache_dir=out / "cache")
    result = train(recipe, cfg.loop, out, run_config, resume=resume)
    print(f"done: {result.steps} steps; best {recipe.primary_metric} {result.best} at step {result.best_step}; "
          f"checkpoint {out / 'best'}")


@app.command()
def lora(
    task: Annotated[Optional[list[str]], typer.Option("--task", "-t", help="Train a per-task (oracle) LoRA for this task (repeatable).")] = None,
    multitask: Annotated[bool, typer.Option("--multitask", help="Train one LoRA on all the config's training tasks.")] = False,
    config: ConfigOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="LoRA library directory: one PEFT adapter per task, _multitask for the multi-task one.")] = Path("runs/lora-library"),
    resume: ResumeOpt = False,
    set_: SetOpt = None,
) -> None:
    """Train PEFT LoRA baselines with early stopping, and install them into a LoRA library directory.

    Example: text2lora train lora --task ni_task001 --task ni_task002 --out runs/lora-library
    """
    from text2lora.train.config import load_config
    from text2lora.train.data import select_tasks
    from text2lora.train.lora import MULTITASK, LoraRecipe, install_adapter
    from text2lora.train.loop import train
    from text2lora.data.library import TaskLibrary
    from text2lora.models.base import default_device, load_base_model
    from text2lora.train.sft import model_dtype

    if bool(task) == multitask:
        raise Text2LoraError("give --task NAME (one or more) or --multitask")
    cfg = load_config("lora", config, _overrides(set_))
    library = TaskLibrary.load(cfg.data.library)
    jobs = [(t, [t]) for t in task] if task else [(MULTITASK, [t.name for t in select_tasks(library, cfg.data)])]
    for name, tasks in jobs:
        for t in tasks:
            library.task(t)  # unknown names fail before any training
    for name, tasks in jobs:
        model, tokenizer = load_base_model(cfg.base_model, dtype=model_dtype(cfg.loop.precision),
                                           device=default_device())
        recipe = LoraRecipe(cfg, tasks, library=library, model=model, tokenizer=tokenizer)
        run_dir = out / ".runs" / name
        config_dict = _run_config(cfg, cfg.data.library, tasks=tasks)
        result = train(recipe, cfg.loop, run_dir, config_dict, resume=resume and run_dir.exists())
        path = install_adapter(run_dir, out, name)
        print(f"{name}: {result.steps} steps, best val_loss {result.best} at step {result.best_step} -> {path}")


@app.command()
def recon(
    library: Annotated[Path, typer.Option("--library", "-l", help="LoRA library directory (from `train lora`).")],
    config: ConfigOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory.")] = Path("runs/recon"),
    resume: ResumeOpt = False,
    set_: SetOpt = None,
) -> None:
    """Train the hypernetwork to reproduce a library of per-task LoRAs from their tasks' descriptions (T2L-recon)."""
    from text2lora.train.config import load_config
    from text2lora.train.loop import train
    from text2lora.train.recon import ReconRecipe

    cfg = load_config("recon", config, _overrides(set_))
    run_config = _run_config(cfg, cfg.data.library, lora_library=str(library))
    _check_run_dir(out, resume, run_config)
    recipe = ReconRecipe(cfg, library, cache_dir=out / "cache")
    result = train(recipe, cfg.loop, out, run_config, resume=resume)
    print(f"done: {result.steps} steps; best {recipe.primary_metric} {result.best} at step {result.best_step}; "
          f"checkpoint {out / 'best'}")
