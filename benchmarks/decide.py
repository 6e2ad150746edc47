"""Choose between two checkpoints on validation reports: each one's score on the validation tasks with each task's
own description (and with random strings), averaged over tasks and over source families, with the paired bootstrap
interval of own - random (benchmarks/claims.py). The candidate wins when it is ahead on both averages.

    python benchmarks/decide.py --incumbent shipped=REPORT_DIR --candidate all-tasks=REPORT_DIR --out validation.json
    python benchmarks/decide.py   # the committed decision: docs/quality/small/all-tasks/ (its DECISION.md's rule)

Needs the task library the reports were made on ($TEXT2LORA_HOME/library, or --library) for the families.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import claims
from text2lora.data.library import TaskLibrary

ALL_TASKS = Path(__file__).resolve().parents[1] / "docs" / "quality" / "small" / "all-tasks"
COLUMN = "t2l-sft"


def summarise(results: dict, family: dict[str, str], column: str = COLUMN) -> dict:
    per_task = results["per_task"]
    tasks = [t["name"] for t in results["tasks"]]
    out: dict = {}
    for group in ("train", "random"):
        scores = {t: 100 * per_task[f"{column}[{group}]"][t]["score"] for t in tasks}
        by_family = defaultdict(list)
        for t, v in scores.items():
            by_family[family[t]].append(v)
        out[f"{group}_task_avg"] = statistics.mean(scores.values())
        out[f"{group}_family_avg"] = statistics.mean(statistics.mean(v) for v in by_family.values())
        out[f"per_task_{group}"] = scores
    out["train_minus_random_ci"] = claims.paired_intervals(claims.per_instance_scores(results), f"{column}[train]",
                                                           f"{column}[random]", tasks)
    return out


def _named(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    if not path:
        raise argparse.ArgumentTypeError(f"give NAME=REPORT_DIR, got {text!r}")
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incumbent", type=_named, default=("shipped", ALL_TASKS / "validation-shipped"))
    parser.add_argument("--candidate", type=_named, default=("all-tasks", ALL_TASKS / "validation-all-tasks"))
    parser.add_argument("--column", default=COLUMN, help="the T2L method's column name (t2l-sft, t2l, ...)")
    parser.add_argument("--library", default=None)
    parser.add_argument("--out", type=Path, default=ALL_TASKS / "validation.json")
    args = parser.parse_args(argv)
    library = TaskLibrary.load(args.library)
    family = {t.name: t.source for t in library.tasks}
    out = {name: summarise(json.loads((path / "results.json").read_text()), family, args.column)
           for name, path in (args.incumbent, args.candidate)}
    args.out.write_text(json.dumps(out, indent=1))
    old, new = out[args.incumbent[0]], out[args.candidate[0]]
    ships = new["train_task_avg"] > old["train_task_avg"] and new["train_family_avg"] > old["train_family_avg"]
    for name, row in out.items():
        print(f"{name:>10}: own description {row['train_task_avg']:.1f} (tasks) {row['train_family_avg']:.1f} "
              f"(families); random strings {row['random_task_avg']:.1f}; own - random CI "
              + ("n/a" if row["train_minus_random_ci"] is None
                 else "[{:+.1f}, {:+.1f}]".format(*row["train_minus_random_ci"][:2])))
    print(f"ship {args.candidate[0]}" if ships else f"keep {args.incumbent[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
