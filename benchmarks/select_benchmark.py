"""Write the unseen benchmark v2 (test and validation tasks, instance ids) from a prepared task library, and its
seen side (training tasks scored on their held-out test split).

    python benchmarks/select_benchmark.py                      # -> benchmarks/v2/benchmark.json and README.md
    python benchmarks/select_benchmark.py --check              # the committed file matches the library
    python benchmarks/select_benchmark.py --seen               # -> benchmarks/v2/seen.json and README.md
    python benchmarks/select_benchmark.py --seen --check       # the committed seen side matches the library

Run once, committed before any training decision it informs (the rules: :mod:`text2lora.eval.benchmark`). The
two files are written separately: writing the seen side never touches ``benchmark.json`` (which the cached v2
results key on), and both sections of ``README.md`` are rewritten from the files as committed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

OUT = Path(__file__).resolve().parent / "v2"


def _rules(rules: dict, cls) -> str:
    order = [f.name for f in fields(cls) if f.name in rules] + sorted(set(rules) - {f.name for f in fields(cls)})
    return ", ".join(f"`{k}` {rules[k]}" for k in order)


def _counts_row(side: str, s: dict) -> str:
    return (f"| {side} | {s['tasks']} | {s['families']} | "
            + ", ".join(f"{k} {v}" for k, v in sorted(s["by_source"].items())) + " | "
            + ", ".join(f"{k} {v}" for k, v in sorted(s["by_metric"].items())) + " |")


def readme(bench: dict, seen: dict | None = None) -> str:
    from text2lora.eval.benchmark import BenchmarkRules, summary

    rules = bench["rules"]
    lines = ["# Unseen benchmark v2", "",
             "Chosen from the task library v2 by properties alone (`text2lora.eval.benchmark`, rules below), before "
             "any method was scored on it; `benchmark.json` holds each task's family, source and the ids of its "
             f"{rules['n_instances']} scored test instances. **validation** is the only side used to choose recipes "
             "and checkpoints; **test** is for claims.", "",
             "Rules: " + _rules(rules, BenchmarkRules), "",
             "| side | tasks | families | by source | by metric |", "|---|---:|---:|---|---|"]
    lines += [_counts_row(side, s) for side, s in summary(bench).items()]
    for side in ("test", "validation"):
        lines += ["", f"## {side}", "", "| task | family | source | metric |", "|---|---|---|---|"]
        lines += [f"| {e['name']} | {e['family']} | {e['origin']} | {e['metric']} |" for e in bench[side]]
    lines += ["", f"## Unseen tasks left out ({len(bench['excluded'])})", ""]
    lines += [f"- {name}: {why}" for name, why in bench["excluded"].items()]
    text = "\n".join(lines) + "\n"
    return text + seen_readme(seen) if seen else text


def seen_readme(seen: dict) -> str:
    from collections import Counter

    from text2lora.eval.benchmark import SeenRules, seen_summary

    rules = seen["rules"]
    lines = ["", "# Seen side (`seen.json`)", "",
             "For \"no regression on seen tasks\": T2L against a per-task LoRA of each task and T2L-recon trained on "
             "those LoRAs (`python benchmarks/quality.py --scale v2 --split seen`). The tasks are **seen** (training) "
             "tasks of the same library, scored on their held-out test split, which no recipe trains or validates "
             "on; they are never on the unseen sides. Chosen by properties alone, with the unseen side's rules "
             "(English, answers of at most `max_answer_words` words or at most `max_options` options, at most "
             f"`max_copy_share` of answers equal to the input, {rules['n_instances']} scored test instances) and at "
             "least `min_train` training instances for the per-task LoRA; then per source the eligible families are "
             "shuffled (seeded) and the first `tasks_per_origin` give one task each (a seeded draw), so every source "
             "is represented and no family twice. `seen.json` holds each task's family, source, training instances "
             "and the ids of its scored test instances; `python benchmarks/select_benchmark.py --seen --check` "
             "checks the library against it.", "",
             "Rules: " + _rules(rules, SeenRules), "",
             "| side | tasks | families | by source | by metric |", "|---|---:|---:|---|---|",
             _counts_row("seen", seen_summary(seen)),
             "", "| task | family | source | metric | training instances |", "|---|---|---|---|---:|"]
    lines += [f"| {e['name']} | {e['family']} | {e['origin']} | {e['metric']} | {e['train']} |" for e in seen["seen"]]
    reasons = Counter(_reason_kind(why) for why in seen["excluded"].values())
    lines += ["", f"Seen tasks left out ({len(seen['excluded'])}, each with its reason in `seen.json`): "
              + ", ".join(f"{kind} {n}" for kind, n in sorted(reasons.items(), key=lambda kv: -kv[1])) + "."]
    return "\n".join(lines) + "\n"


def _reason_kind(why: str) -> str:
    for key, kind in (("language", "language"), ("answers of", "long answers"), ("options", "too many options"),
                      ("copy", "copied answers"), ("test instances", "too few test instances"),
                      ("training instances", "too few training instances"), ("families", "source already drawn"),
                      ("family", "family already drawn")):
        if key in why:
            return kind
    return why


def _check_seen(seen: dict, bench: dict, library) -> str:
    from text2lora.errors import Text2LoraError
    from text2lora.eval.benchmark import check_seen

    names = check_seen(seen, library)
    unseen = {e["name"] for side in ("test", "validation") for e in bench[side]}
    if unseen & set(names):
        raise Text2LoraError(f"seen tasks on an unseen side: {', '.join(sorted(unseen & set(names)))}")
    return f"seen: {len(names)} tasks, instances as committed, none on an unseen side"


def main(argv: list[str] | None = None) -> int:
    from text2lora.data.library import TaskLibrary
    from text2lora.eval.benchmark import check_benchmark, select_benchmark, select_seen
    from text2lora.paths import atomic_write_text, write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", default=None, help="prepared task library (default $TEXT2LORA_HOME/library)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seen", action="store_true", help="the seen side (seen.json) instead of benchmark.json")
    parser.add_argument("--check", action="store_true", help="only check the committed benchmark against the library")
    args = parser.parse_args(argv)
    library = TaskLibrary.load(args.library)
    path, seen_path = args.out / "benchmark.json", args.out / "seen.json"
    if args.check:
        bench = json.loads(path.read_text())
        if args.seen:
            print(_check_seen(json.loads(seen_path.read_text()), bench, library))
            return 0
        for side in ("test", "validation"):
            print(f"{side}: {len(check_benchmark(bench, library, side))} tasks, instances as committed")
        return 0
    if args.seen and not path.is_file():
        print(f"no unseen benchmark at {path}: the seen side is written beside it", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.seen:
        seen = select_seen(library)
        write_json(seen_path, seen)
        bench = json.loads(path.read_text())
        print(_check_seen(seen, bench, library))
    else:
        bench = select_benchmark(library)
        write_json(path, bench)
        seen = json.loads(seen_path.read_text()) if seen_path.is_file() else None
    atomic_write_text(args.out / "README.md", readme(bench, seen))
    print(seen_readme(seen) if args.seen else readme(bench).split("\n## test")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
