"""`text2lora train sft | lora | recon`: thin wrappers over text2lora.train."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from text2lora.cli.options import ConfigOpt, SetOpt, parse_sets
from text2lora.errors import Text2LoraError

app = typer.Typer(help="Train T2L (SFT or reconstruction) and the PEFT LoRA baselines.", no_args_is_help=True)

ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its latest checkpoint.")]


def _check_run_dir(out: Path, resume: bool, run_config: dict) -> None:
    """Fail on an unusable --out or a mismatched --resume before any model loads."""
    from text2lora.paths import check_out_path
    from text2lora.train.loop import check_out_dir, check_resume_config

    check_out_dir(check_out_path(out), resume)
    if resume:
        check_resume_config(out, run_config)


@app.command()
def sft(
    config: ConfigOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory: checkpoints, metrics, loss.png, best/ and final/.")] = Path("runs/sft"),
    resume: ResumeOpt = False,
    set_: SetOpt = None,
) -> None:
    """Train the hypernetwork end to end through the frozen base model on many tasks (T2L-SFT).

    Example: text2lora train sft --config configs/smollm2-sft.yaml --out runs/sft
    The trained hypernetwork is written to OUT/best (lowest validation loss, or highest generation score with
    gen_val.select_by gen_score) and OUT/final.
    """
    from text2lora.train.config import load_config
    from text2lora.train.loop import run_config, train
    from text2lora.train.sft import SFTRecipe

    cfg = load_config("sft", config, parse_sets(set_))
    resolved = run_config(cfg, cfg.data.library)
    _check_run_dir(out, resume, resolved)
    recipe = SFTRecipe(cfg, cache_dir=out / "cache", run_dir=out)
    result = train(recipe, cfg.loop, out, resolved, resume=resume)
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
    from text2lora.train.baselines import train_baselines
    from text2lora.train.config import load_config

    if bool(task) == multitask:
        raise Text2LoraError("give --task NAME (one or more) or --multitask")
    cfg = load_config("lora", config, parse_sets(set_))
    from text2lora.paths import check_out_path

    check_out_path(out)
    train_baselines(cfg, out, tasks=list(task) if task else None, resume=resume)


@app.command()
def recon(
    lora_library: Annotated[Path, typer.Option("--lora-library", help="LoRA library directory (from `train lora`).")],
    config: ConfigOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory.")] = Path("runs/recon"),
    resume: ResumeOpt = False,
    set_: SetOpt = None,
) -> None:
    """Train the hypernetwork to reproduce a library of per-task LoRAs from their tasks' descriptions (T2L-recon)."""
    from text2lora.train.config import load_config
    from text2lora.train.loop import run_config, train
    from text2lora.train.recon import ReconRecipe

    cfg = load_config("recon", config, parse_sets(set_))
    resolved = run_config(cfg, cfg.data.library, lora_library=str(lora_library))
    _check_run_dir(out, resume, resolved)
    recipe = ReconRecipe(cfg, lora_library, cache_dir=out / "cache")
    result = train(recipe, cfg.loop, out, resolved, resume=resume)
    print(f"done: {result.steps} steps; best {recipe.primary_metric} {result.best} at step {result.best_step}; "
          f"checkpoint {out / 'best'}")
