"""`text2lora data ...`: build and inspect the task library (see :mod:`text2lora.data`)."""

from __future__ import annotations

import textwrap
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from text2lora.cli.options import ConfigOpt, SetOpt, build, config_data, settings_from
from text2lora.data.describe import DescribeConfig
from text2lora.data.fit import Budget
from text2lora.data.prepare import PrepareConfig

app = typer.Typer(help="Build and inspect the task library.", no_args_is_help=True)

_DESCRIBE = DescribeConfig()
_PREPARE = PrepareConfig(sources=["ni1"])  # only its defaults are read
_BUDGET = Budget()
LibraryOpt = Annotated[Optional[Path], typer.Option("--library", "-l", help="Library directory (default $TEXT2LORA_HOME/library).")]


@app.command()
def prepare(
    ctx: typer.Context,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Library directory (default $TEXT2LORA_HOME/library).")] = None,
    sources: Annotated[str, typer.Option("--sources", help="Built-in task sources, comma-separated, or 'none': ni1 (Natural Instructions v1) and bigbench (both "
             "from the pinned bigbench sdist), evals (OpenAI's evals registry, from the pinned evals wheel).")] = "ni1,bigbench,evals",
    extra: Annotated[list[Path], typer.Option("--extra", "-e", help="More task files/directories (SNI v2, BIG-bench JSON, "
                                                                "user JSONL); repeatable.")] = [],
    source_file: Annotated[list[Path], typer.Option("--source-file", help="A local copy of a pinned source file, used instead of "
        "downloading it (offline, or a release the registry no longer serves): bigbench-1.0.0.tar.gz or "
        "evals-3.0.1.post1-py3-none-any.whl, checked by sha256; repeatable.")] = [],
    format: Annotated[str, typer.Option("--format", help="Format of --extra paths: auto, bigbench, ni1, sni, jsonl.")] = "auto",
    description: Annotated[Optional[str], typer.Option("--description", help="Description for JSONL files without a header.")] = None,
    tokenizer: Annotated[str, typer.Option(help="Tokenizer the budget is counted in.")] = _PREPARE.tokenizer,
    seed: Annotated[int, typer.Option(help="Seed of every sample and split.")] = _PREPARE.seed,
    unseen_fraction: Annotated[float, typer.Option(help="Share of tasks held out as unseen (whole "
                                          "source families), for every source but the evals registry.")] = _PREPARE.unseen_fraction,
    evals_unseen_fraction: Annotated[float, typer.Option(help="Share of the evals registry's tasks held out as unseen.")] = _PREPARE.evals_unseen_fraction,
    max_prompt_tokens: Annotated[int, typer.Option(help="Max user-turn tokens; longer inputs are cut or dropped.")] = _BUDGET.max_prompt_tokens,
    max_output_tokens: Annotated[int, typer.Option(help="Max generation target tokens; longer instances are dropped.")] = _BUDGET.max_output_tokens,
    min_instances: Annotated[int, typer.Option(help="Drop tasks with fewer usable instances.")] = _BUDGET.min_instances,
    max_instances: Annotated[int, typer.Option(help="Instances kept per task.")] = _BUDGET.max_instances,
    max_tasks_per_source: Annotated[int, typer.Option(help="Tasks kept per source family.")] = _BUDGET.max_tasks_per_source,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    config_file: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Fetch the pinned task sources (bigbench sdist, evals wheel; never installed) and build the task library.

    Without the registry, give local copies of the pinned files with --source-file (checked by sha256).

    --config/--set set any PrepareConfig field, the token budget under budget (e.g. --set budget.max_instances=200).
    """
    from text2lora.data.fetch import add_local
    from text2lora.data.prepare import PINNED_FILES, prepare_library

    for path in source_file:  # into the download cache, where the fetch finds it: the build itself is unchanged
        add_local(path, PINNED_FILES)
    data = config_data(config_file, set_)
    budget = build(ctx, Budget, data.pop("budget", None) or {}, max_prompt_tokens=max_prompt_tokens,
                   max_output_tokens=max_output_tokens, min_instances=min_instances, max_instances=max_instances,
                   max_tasks_per_source=max_tasks_per_source)
    names = [] if sources.strip().lower() == "none" else [s.strip() for s in sources.split(",") if s.strip()]
    config = build(ctx, PrepareConfig, data, out=out, sources=names, extra=list(extra), format=format,
                   description=description, tokenizer=tokenizer, budget=budget, seed=seed,
                   unseen_fraction=unseen_fraction, evals_unseen_fraction=evals_unseen_fraction)
    report = prepare_library(config, progress=not quiet)
    for problem in report.problems:
        typer.echo(f"warning: {problem}", err=True)
    _print_dropped(report.dropped)
    tasks = report.tasks
    typer.echo(f"\n{len(tasks)} tasks in {report.root}")
    typer.echo("by metric:  " + _fmt(Counter(t.metric for t in tasks)))
    typer.echo("by dataset: " + _fmt(Counter(t.origin for t in tasks)))
    typer.echo("by language: " + _fmt(Counter(t.language for t in tasks)))
    typer.echo("by split:   " + _fmt(Counter(t.split for t in tasks)))
    instances = Counter()
    for t in tasks:
        instances.update({k: v for k, v in t.counts.items() if k != "total"})
    typer.echo("instances:  " + _fmt(instances))
    sources = Counter(t.source for t in tasks)
    typer.echo(f"by source ({len(sources)} families):")
    for source, n in sorted(sources.items(), key=lambda kv: (-kv[1], kv[0])):
        split = {t.split for t in tasks if t.source == source}.pop()
        typer.echo(f"  {n:3d}  {source} ({split})")


def _fmt(counter: Counter) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))))


def _print_dropped(dropped: list[dict[str, str]]) -> None:
    capped: dict[str, int] = defaultdict(int)
    other = []
    for d in dropped:
        if d["reason"].startswith("over the cap"):
            capped[d["reason"].rsplit(" ", 1)[-1]] += 1
        else:
            other.append(d)
    if not dropped:
        return
    typer.echo(f"dropped {len(dropped)} tasks:")
    for source, n in sorted(capped.items()):
        typer.echo(f"  {n:3d} tasks of {source}: over the per-source cap")
    for d in sorted(other, key=lambda d: d["name"]):
        typer.echo(f"  {d['name']}: {d['reason']}")


@app.command()
def describe(
    ctx: typer.Context,
    library: LibraryOpt = None,
    model: Annotated[str, typer.Option(help="Instruct model: bundled name, HF id or directory.")] = _DESCRIBE.model,
    k: Annotated[int, typer.Option(help="Training descriptions per task (the task's own included).")] = _DESCRIBE.k,
    k_eval: Annotated[int, typer.Option(help="Held-out descriptions per task.")] = _DESCRIBE.k_eval,
    task: Annotated[list[str], typer.Option("--task", "-t", help="Only these tasks (repeatable).")] = [],
    limit: Annotated[Optional[int], typer.Option(help="Only the first N tasks.")] = None,
    samples_per_prompt: Annotated[int, typer.Option(help="Sampled descriptions per prompt and generation call.")] = _DESCRIBE.samples_per_prompt,
    rounds: Annotated[int, typer.Option(help="Generation calls per task at most.")] = _DESCRIBE.rounds,
    min_similarity: Annotated[float, typer.Option(help="Reject descriptions less similar to the "
                                         "definition (MiniLM cosine); 0 disables the check.")] = _DESCRIBE.min_similarity,
    seed: Annotated[int, typer.Option()] = _DESCRIBE.seed,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: torch's choice; 1 is faster "
                                                     "on a busy shared CPU).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    config_file: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Write K descriptions per task with a local instruct model (cached per task; resumable).

    --config/--set set any DescribeConfig field (temperature, max_new_tokens, prompts_per_round, ...)."""
    from text2lora.data.describe import describe_library

    config = settings_from(ctx, DescribeConfig, config_file, set_, model=model, k=k, k_eval=k_eval,
                           samples_per_prompt=samples_per_prompt, rounds=rounds,
                           min_similarity=min_similarity or None, seed=seed, threads=threads)
    report = describe_library(library, config, names=task or None, limit=limit, progress=not quiet)
    typer.echo(f"described {len(report.described)} tasks in {report.seconds:.0f} s "
               f"({len(report.cached)} already cached)")
    if report.rejected:
        typer.echo("rejected: " + _fmt(report.rejected))
    for name, n in sorted(report.short.items()):
        typer.echo(f"  {name}: only {n} of {k - 1 + k_eval} descriptions accepted")


@app.command("list")
def list_tasks(
    library: LibraryOpt = None,
    split: Annotated[Optional[str], typer.Option(help="Only 'seen' or 'unseen' tasks.")] = None,
    source: Annotated[Optional[str], typer.Option(help="Only this source family.")] = None,
) -> None:
    """List the library's tasks: name, split, metric, source, instances, descriptions."""
    from text2lora.data.library import TaskLibrary

    lib = TaskLibrary.load(library)
    tasks = [t for t in lib.tasks if (split is None or t.split == split) and (source is None or t.source == source)]
    width = max((len(t.name) for t in tasks), default=4)
    typer.echo(f"{'task':{width}}  split   metric           n    desc  lang      source")
    for t in tasks:
        typer.echo(f"{t.name:{width}}  {t.split or '-':6}  {t.metric:15}  {t.counts.get('total', 0):4d}  "
                   f"{len(t.descriptions):2d}+{len(t.heldout_descriptions)}  {t.language:8}  {t.source}")
    typer.echo(f"{len(tasks)} tasks in {len({t.source for t in tasks})} source families")
    by: dict[tuple[str, str], list] = defaultdict(list)
    for t in tasks:
        by[(t.origin, t.split or "-")].append(t)
    typer.echo(f"{'dataset':26}  {'split':6}  {'tasks':>5}  {'families':>8}  {'described':>9}")
    for (origin, side), group in sorted(by.items()):
        described = sum(1 for t in group if len(t.descriptions) > 1)
        typer.echo(f"{origin:26}  {side:6}  {len(group):5d}  {len({t.source for t in group}):8d}  {described:9d}")


@app.command()
def show(
    name: str = typer.Argument(..., help="Task name (see `text2lora data list`)."),
    library: LibraryOpt = None,
    n: Annotated[int, typer.Option(help="Instances to show.")] = 3,
) -> None:
    """Show a task: definition, descriptions and a few instances."""
    from text2lora.data.library import TaskLibrary

    lib = TaskLibrary.load(library)
    t = lib.task(name)
    typer.echo(f"{t.name}  [{t.metric}, {t.split}, source {t.source}, {t.origin}, license {t.license}]")
    typer.echo("instances: " + ", ".join(f"{k} {v}" for k, v in t.counts.items()))
    typer.echo("\ndefinition:\n" + textwrap.indent(t.definition, "  "))
    typer.echo("\ndescriptions (training; the first is the task's own):")
    for d in t.descriptions:
        typer.echo(f"  - {d}")
    if t.heldout_descriptions:
        typer.echo("held-out descriptions:")
        for d in t.heldout_descriptions:
            typer.echo(f"  - {d}")
    insts = lib.instances(t.name, "train")
    insts += [i for i in lib.instances(t.name) if i not in insts]  # train first, then the rest
    for i, inst in enumerate(insts[:n], 1):
        typer.echo(f"\ninstance {i}:\n  input: {inst.input}")
        if inst.options:
            typer.echo("  options: " + " | ".join(inst.options))
        typer.echo(f"  output: {inst.output}")
