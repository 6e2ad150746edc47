"""Write the unseen benchmark v2 (test and validation tasks, instance ids) from a prepared task library.

    python benchmarks/select_benchmark.py                      # -> benchmarks/v2/benchmark.json and README.md
    python benchmarks/select_benchmark.py --check              # the committed file matches the library

Run once, committed before any training decision it informs (the rules: :mod:`text2lora.eval.benchmark`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "v2"


def readme(bench: dict) -> str:
    from text2lora.eval.benchmark import summary

    rules = bench["rules"]
    lines = ["# Unseen benchmark v2", "",
             "Chosen from the task library v2 by properties alone (`text2lora.eval.benchmark`, rules below), before "
             "any method was scored on it; `benchmark.json` holds each task's family, source and the ids of its "
             f"{rules['n_instances']} scored test instances. **validation** is the only side used to choose recipes "
             "and checkpoints; **test** is for claims.", "",
             "Rules: " + ", ".join(f"`{k}` {v}" for k, v in rules.items()), "",
             "| side | tasks | families | by source | by metric |", "|---|---:|---:|---|---|"]
    for side, s in summary(bench).items():
        lines.append(f"| {side} | {s['tasks']} | {s['families']} | "
                     + ", ".join(f"{k} {v}" for k, v in sorted(s["by_source"].items())) + " | "
                     + ", ".join(f"{k} {v}" for k, v in sorted(s["by_metric"].items())) + " |")
    for side in ("test", "validation"):
        lines += ["", f"## {side}", "", "| task | family | source | metric |", "|---|---|---|---|"]
        lines += [f"| {e['name']} | {e['family']} | {e['origin']} | {e['metric']} |" for e in bench[side]]
    lines += ["", f"## Unseen tasks left out ({len(bench['excluded'])})", ""]
    lines += [f"- {name}: {why}" for name, why in bench["excluded"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from text2lora.data.library import TaskLibrary
    from text2lora.eval.benchmark import check_benchmark, select_benchmark
    from text2lora.paths import atomic_write_text, write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", default=None, help="prepared task library (default $TEXT2LORA_HOME/library)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="only check the committed benchmark against the library")
    args = parser.parse_args(argv)
    library = TaskLibrary.load(args.library)
    path = args.out / "benchmark.json"
    if args.check:
        bench = json.loads(path.read_text())
        for side in ("test", "validation"):
            print(f"{side}: {len(check_benchmark(bench, library, side))} tasks, instances as committed")
        return 0
    bench = select_benchmark(library)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(path, bench)
    atomic_write_text(args.out / "README.md", readme(bench))
    print(readme(bench).split("\n## test")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
