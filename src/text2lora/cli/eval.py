"""`text2lora eval`: score methods on library tasks or a user task file; thin wrapper over text2lora.eval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from text2lora.cli.options import ConfigOpt, SetOpt, settings_from
from text2lora.errors import Text2LoraError
from text2lora.paths import check_out_path
from text2lora.eval.config import EvalSettings

_SETTINGS = EvalSettings()  # every setting's default comes from here

METHOD_HELP = ("Method to score (repeatable or comma-separated): base, desc-prompt, icl3, multitask-lora, task-lora, "
               "t2l-recon, t2l-sft, t2l (default or --t2l-checkpoint), peft:<dir>, t2l:<dir>.")


def eval_(
    ctx: typer.Context,
    method: Annotated[list[str], typer.Option("--method", "-m", help=METHOD_HELP)],
    library: Annotated[Optional[Path], typer.Option("--library", "-l", help="Task library (default $TEXT2LORA_HOME/library).")] = None,
    tasks: Annotated[str, typer.Option(help="all, seen, unseen, or comma-separated task names.")] = "all",
    max_tasks: Annotated[Optional[int], typer.Option(help="Keep the first N tasks (by name) of each split.")] = None,
    task_file: Annotated[Optional[Path], typer.Option(help="Evaluate a user JSONL task instead: {input, output} or {input, options, answer} per line.")] = None,
    description: Annotated[Optional[str], typer.Option(help="The --task-file task's description (or a header line {\"description\": ...} in the file).")] = None,
    groups: Annotated[str, typer.Option(help="T2L description groups: train, heldout, other, random (comma-separated).")] = "train,heldout",
    method_groups: Annotated[Optional[list[str]], typer.Option(
        help="Groups for one method instead of --groups: METHOD=G1,G2 (repeatable), e.g. t2l-recon=train.")] = None,
    lora_library: Annotated[Optional[Path], typer.Option(help="PEFT LoRA library from `train lora` (task-lora, multitask-lora).")] = None,
    t2l_sft: Annotated[Optional[Path], typer.Option("--t2l-sft", help="T2L-SFT checkpoint (e.g. runs/sft/best).")] = None,
    t2l_recon: Annotated[Optional[Path], typer.Option("--t2l-recon", help="T2L-recon checkpoint (e.g. runs/recon/best).")] = None,
    t2l_checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint for the method t2l (default: the shipped one).")] = None,
    base_model: Annotated[str, typer.Option(help="Base model every method runs on.")] = _SETTINGS.base_model,
    max_instances: Annotated[int, typer.Option(help="Test instances per task.")] = _SETTINGS.max_instances,
    max_new_tokens: Annotated[int, typer.Option(help="Generation tasks: greedy decoding stops here or at end of turn.")] = _SETTINGS.max_new_tokens,
    max_prompt_tokens: Annotated[int, typer.Option(help="Prompt budget in tokens (icl3: --icl-max-prompt-tokens).")] = _SETTINGS.max_prompt_tokens,
    icl_max_prompt_tokens: Annotated[int, typer.Option(help="Prompt budget of icl3 (shots are dropped to fit).")] = _SETTINGS.icl_max_prompt_tokens,
    descriptions_per_group: Annotated[int, typer.Option(help="T2L: descriptions per group and task, scores averaged.")] = _SETTINGS.descriptions_per_group,
    seed: Annotated[int, typer.Option(help="Seed for ICL shots, other-task descriptions and random strings.")] = _SETTINGS.seed,
    batch_size: Annotated[int, typer.Option(help="Prompts per forward pass (multiple choice: each with all its options).")] = 16,
    report: Annotated[Optional[Path], typer.Option("--report", "-r", help="Write results.json, results.md and results.png here.")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Score cache (default $TEXT2LORA_HOME/eval-cache).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Score everything; read and write no cache.")] = False,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's choice; 1 can be faster on a busy machine).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Score methods on tasks: generation by greedy decoding (strict exact match for short answers, ROUGE-L for
    long ones, copy rate), multiple choice by option log-likelihood (length-normalised accuracy). Scores are cached
    per (method, task, description).

    Example: text2lora eval -m base -m icl3 -m t2l-sft --t2l-sft runs/sft/best --tasks unseen --report reports/unseen
    --config/--set set the scoring settings (EvalSettings: max_instances, max_new_tokens, seed, ...).
    """
    from text2lora.eval.config import EvalConfig, EvalSettings, split_list
    from text2lora.eval.report import summary_lines, write_report
    from text2lora.eval.runner import evaluate

    if report is not None and check_out_path(report).exists() and not report.is_dir():  # found now, not after the whole run
        raise Text2LoraError(f"--report {report} is a file; name a directory for results.json, .md and .png")
    settings = settings_from(ctx, EvalSettings, config, set_, base_model=base_model, max_instances=max_instances,
                             max_new_tokens=max_new_tokens, max_prompt_tokens=max_prompt_tokens,
                             icl_max_prompt_tokens=icl_max_prompt_tokens,
                             descriptions_per_group=descriptions_per_group, seed=seed)
    run = EvalConfig(
        methods=split_list(method), settings=settings, library=_str(library), tasks=tasks, max_tasks=max_tasks,
        task_file=_str(task_file), description=description, groups=tuple(split_list(groups)),
        method_groups=_method_groups(method_groups or []),
        lora_library=_str(lora_library), t2l_sft=_str(t2l_sft), t2l_recon=_str(t2l_recon),
        t2l_checkpoint=_str(t2l_checkpoint), batch_size=batch_size, cache_dir=_str(cache_dir), use_cache=not no_cache,
        progress=not quiet, threads=threads,
    )
    result = evaluate(run)
    typer.echo("averages (headline score x100: strict exact match, ROUGE-L for long answers, accuracy):")
    for line in summary_lines(result):
        typer.echo(line)
    if report is not None:
        paths = write_report(result, report)
        typer.echo("report: " + ", ".join(str(p) for p in paths.values()))


def _str(path: Path | None) -> str | None:
    return str(path) if path is not None else None




def _method_groups(items: list[str]) -> dict[str, tuple[str, ...]]:
    from text2lora.eval.config import split_list

    out: dict[str, tuple[str, ...]] = {}
    for item in items:
        method, sep, groups = item.partition("=")
        if not sep or not method.strip():
            raise Text2LoraError(f"--method-groups {item!r}: write METHOD=GROUP[,GROUP...], e.g. t2l-recon=train")
        out[method.strip()] = tuple(split_list([groups]))
    return out
