"""How much of a task library's training data answers by (nearly) repeating the input: a cause the SFT collapse to
echoing could have (issue 16). No model runs; a minute or two on a CPU for the whole library.

    python benchmarks/copy_diagnosis.py [--library DIR] [--tasks seen] [--split train] [--json OUT.json]

For every chosen task, over its first ``--max-instances`` instances of ``--split``, the share of answers that

* **copy**: are the input, whitespace aside (:func:`text2lora.eval.metrics.is_copy`, the copy rate of reports);
* **near**: are nearly the input, case-sensitively (:func:`text2lora.eval.metrics.near_copy`: the same words, or a
  word-level LCS F1 >= 0.9; the rule ``copy_downweight`` uses);
* **near, any case**: have a normalised ROUGE-L >= 0.9 against the input (lower case, no punctuation or articles:
  answers an echo would score on with a lower-casing metric, such as upper-casing tasks);

and **overlap**, the mean share of an answer's words found among the input's words (spans taken from the input).
Tasks are aggregated per source family and per source, as means over tasks: training samples tasks uniformly, so
that is the share of training examples; ``pooled`` weighs every instance alike. Prints Markdown, writes JSON.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

NEAR = 0.9  #: the LCS F1 (near) and ROUGE-L (near, any case) thresholds
COLUMNS = ("copy", "near", "near_any_case", "overlap")


def _may_reach(a: int, b: int) -> bool:
    """Whether sequences of lengths ``a`` and ``b`` can have an LCS F1 of ``NEAR`` (skips the LCS when not)."""
    return a > 0 and b > 0 and 2 * min(a, b) / (a + b) >= NEAR


def instance_flags(output: str, source: str) -> dict[str, float]:
    from text2lora.eval.metrics import is_copy, near_copy, normalize, rouge_l

    words, source_words = output.split(), source.split()
    near = _may_reach(len(words), len(source_words)) and near_copy(output, source, NEAR)
    loose = _may_reach(len(normalize(output).split()), len(normalize(source).split())) and rouge_l(output, source) >= NEAR
    overlap = sum(w in set(source_words) for w in words) / len(words) if words else 0.0
    return {"copy": is_copy(output, source), "near": float(near), "near_any_case": float(loose), "overlap": overlap}


def task_row(task, instances) -> dict[str, Any]:
    flags = [instance_flags(i.output, i.input) for i in instances]
    row: dict[str, Any] = {"task": task.name, "family": task.source, "origin": task.origin, "metric": task.metric,
                           "n": len(flags)}
    for c in COLUMNS:
        row[c] = round(sum(f[c] for f in flags) / len(flags), 5)
    return row


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over tasks (the share of training examples), the instance-pooled shares, and the tasks that are
    mostly near-copies."""
    n = sum(r["n"] for r in rows)
    out: dict[str, Any] = {"tasks": len(rows), "instances": n,
                           "tasks_mostly_near": sum(r["near"] >= 0.5 for r in rows),
                           "tasks_mostly_near_any_case": sum(r["near_any_case"] >= 0.5 for r in rows)}
    for c in COLUMNS:
        out[c] = round(sum(r[c] for r in rows) / len(rows), 5)
        out[f"pooled_{c}"] = round(sum(r[c] * r["n"] for r in rows) / n, 5)
    return out


def diagnose(library_dir: str | None, tasks: str, split: str, max_instances: int) -> dict[str, Any]:
    from text2lora.data.library import TaskLibrary

    library = TaskLibrary.load(library_dir)
    chosen = {"seen": library.seen(), "unseen": library.unseen(), "all": list(library.tasks)}.get(tasks)
    if chosen is None:
        chosen = [library.task(name.strip()) for name in tasks.split(",") if name.strip()]
    rows = []
    for task in sorted(chosen, key=lambda t: t.name):
        instances = library.instances(task.name, split)[:max_instances]
        if instances:
            rows.append(task_row(task, instances))
    if not rows:
        sys.exit(f"no {split} instances in the chosen tasks of {library.root}")
    by: dict[str, dict[str, list]] = {"family": defaultdict(list), "origin": defaultdict(list)}
    for r in rows:
        by["family"][r["family"]].append(r)
        by["origin"][r["origin"]].append(r)
    from text2lora.paths import sha256_file

    return {"library": str(library.root), "library_index_sha256": sha256_file(library.root / "index.json"),
            "tasks_selector": tasks, "split": split, "max_instances": max_instances,
            "threshold": NEAR, "overall": aggregate(rows),
            "origins": {k: aggregate(v) for k, v in sorted(by["origin"].items())},
            "families": {k: aggregate(v) for k, v in sorted(by["family"].items())}, "tasks": rows}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(result: dict[str, Any], top: int) -> str:
    head = ("| {} | tasks | instances | copy % | near % | near, any case % | overlap % | tasks mostly near "
            "(any case) |\n|---|---:|---:|---:|---:|---:|---:|---:|")

    def line(name: str, a: dict[str, Any]) -> str:
        return (f"| {name} | {a['tasks']} | {a['instances']} | {_pct(a['copy'])} | {_pct(a['near'])} | "
                f"{_pct(a['near_any_case'])} | {_pct(a['overlap'])} | {a['tasks_mostly_near']} "
                f"({a['tasks_mostly_near_any_case']}) |")

    o = result["overall"]
    lines = [f"Task library `{result['library']}` (index sha256 {result['library_index_sha256'][:12]}), "
             f"{result['tasks_selector']} tasks, {result['split']} split (first "
             f"{result['max_instances']} instances per task); shares are means over tasks (training samples tasks "
             f"uniformly). Pooled over instances: copy {_pct(o['pooled_copy'])} %, near {_pct(o['pooled_near'])} %, "
             f"near any case {_pct(o['pooled_near_any_case'])} %.", "", head.format("source")]
    lines += [line(k, a) for k, a in result["origins"].items()]
    lines.append(line("**all**", o))
    families = sorted(result["families"].items(), key=lambda kv: (-kv[1]["near_any_case"], -kv[1]["near"], kv[0]))
    echoing = [kv for kv in families if max(kv[1]["copy"], kv[1]["near"], kv[1]["near_any_case"]) > 0]
    shown = echoing[:top]
    lines += ["", f"Families with the most near-copy answers ({len(shown)} shown; {len(echoing)} of {len(families)} "
                  "families have any):", "", head.format("family")]
    lines += [line(k, a) for k, a in shown]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", default=None, help="task library (default: $TEXT2LORA_HOME/library)")
    parser.add_argument("--tasks", default="seen", help="seen (the training tasks), unseen, all, or task names")
    parser.add_argument("--split", default="train", choices=["train", "validation", "test"])
    parser.add_argument("--max-instances", type=int, default=200, help="instances per task (its first N)")
    parser.add_argument("--top", type=int, default=25, help="families listed in the Markdown table")
    parser.add_argument("--json", type=Path, default=None, help="write the full result (every task) here")
    args = parser.parse_args(argv)
    if args.max_instances < 1 or args.top < 0:
        parser.error("--max-instances must be >= 1 and --top >= 0")
    from text2lora.errors import Text2LoraError

    try:
        result = diagnose(args.library, args.tasks, args.split, args.max_instances)
    except Text2LoraError as e:
        sys.exit(f"error: {e}")
    print(markdown(result, args.top), end="")
    if args.json is not None:
        from text2lora.paths import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
