"""Copy a training run's records into the repository, so that they outlive $TEXT2LORA_HOME (runs are not committed).

    python scripts/publish_run.py $TEXT2LORA_HOME/runs/v2-short/R4 docs/quality/v2-recipe/short-runs/R4
    python scripts/publish_run.py $TEXT2LORA_HOME/runs/sft-v2 docs/quality/v2-recipe/long-run

Copies ``metrics.jsonl``, ``gen_val.jsonl`` and ``summary.json`` (those the run has written so far), draws
``loss.png`` from the metrics and writes ``per-task.md`` from ``gen_val.jsonl`` (right answers per task at every
evaluation, for each model scored), so a run still going can be published and committed as it goes. Checkpoints stay where
they are: only records travel. Prints the last step and the last validation-by-generation scores it copied.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from text2lora.train.metrics_log import plot_curves, read_metrics

RECORDS = ("metrics.jsonl", "gen_val.jsonl", "summary.json")


def per_task_table(gen_val: Path) -> str:
    """Markdown: for each validation task, right answers out of its instances at each evaluation, a row per model
    (``t2l``, ``t2l+shots``; ``base`` once: it does not train). Lines cut off by a kill are skipped."""
    counts: dict[tuple[str, str], dict[int, str]] = {}
    sizes: dict[str, int] = {}
    for line in gen_val.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("tasks"), dict):
            continue
        for task, entry in row["tasks"].items():
            n = int(entry.get("n", 0))
            sizes[task] = max(sizes.get(task, 0), n)
            counts.setdefault((task, row.get("model", "?")), {})[row.get("step", -1)] = str(round(entry["score"] * n))
    models = [m for m in ("base", "t2l", "t2l+shots") if any(model == m for _, model in counts)]
    models += sorted({model for _, model in counts} - set(models))
    steps = sorted({step for (_, model), by_step in counts.items() if model != "base" for step in by_step})
    if not steps:
        return ""
    lines = [f"# Validation by generation, per task: right answers at each step ({gen_val.name})", "",
             "`base` is the base model alone: it does not train, so its first score stands for all. A task where no "
             "model ever scores is left out and counted below.", "",
             "| task | n | model | " + " | ".join(str(s) for s in steps) + " |",
             "|---|---:|---|" + "---:|" * len(steps)]
    silent = 0
    for task in sorted(sizes):
        rows = [(m, counts.get((task, m), {})) for m in models if (task, m) in counts]
        if all(v == "0" for _, by_step in rows for v in by_step.values()):
            silent += 1
            continue
        for model, by_step in rows:
            if model == "base":
                cells = [next(iter(by_step.values()), "")] + [""] * (len(steps) - 1)
            else:
                cells = [by_step.get(s, "") for s in steps]
            lines.append(f"| {task} | {sizes[task]} | {model} | " + " | ".join(cells) + " |")
    lines += ["", f"{silent} of {len(sizes)} tasks: no right answer from any model at any step."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory (text2lora train ... --out RUN)")
    parser.add_argument("dest", type=Path, help="where its records go (created)")
    args = parser.parse_args(argv)
    if not (args.run / "metrics.jsonl").is_file():
        print(f"error: {args.run} has no metrics.jsonl (is it a training run's directory?)", file=sys.stderr)
        return 2
    args.dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in RECORDS:
        if (args.run / name).is_file():
            if (args.run / name).resolve() != (args.dest / name).resolve():  # else: redraw published records in place
                shutil.copyfile(args.run / name, args.dest / name)
            copied.append(name)
    if plot_curves(args.dest) is not None:
        copied.append("loss.png")
    if (args.dest / "gen_val.jsonl").is_file():
        table = per_task_table(args.dest / "gen_val.jsonl")
        if table:
            (args.dest / "per-task.md").write_text(table)
            copied.append("per-task.md")
    rows = read_metrics(args.dest)
    steps = [r["step"] for r in rows if isinstance(r.get("step"), int)]
    gen = [r for r in rows if "gen_score" in r]
    print(f"{args.dest}: {', '.join(copied)}; last step {max(steps) if steps else '-'}")
    if gen:
        last = gen[-1]
        extra = {k: round(v, 4) for k, v in last.items() if k.startswith("gen_") and isinstance(v, float)}
        print(f"  last validation by generation (step {last['step']}): {json.dumps(extra)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
