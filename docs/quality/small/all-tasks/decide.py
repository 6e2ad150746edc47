"""Apply DECISION.md's rule to the two validation reports: each checkpoint's score on the unseen validation tasks
with each task's own description (and with random strings), averaged over tasks and over source families, and
the paired bootstrap interval of own - random (benchmarks/claims.py). Writes validation.json beside this file.

    python docs/quality/small/all-tasks/decide.py      # needs the task library ($TEXT2LORA_HOME/library)
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3] / "benchmarks"))

import claims  # noqa: E402
from text2lora.data.library import TaskLibrary, default_library_dir  # noqa: E402

CANDIDATES = {"shipped": "validation-shipped", "all-tasks": "validation-all-tasks"}  #: name -> report directory


def summarise(results: dict, family: dict[str, str]) -> dict:
    per_task = results["per_task"]
    tasks = [t["name"] for t in results["tasks"]]
    out: dict = {}
    for group in ("train", "random"):
        scores = {t: 100 * per_task[f"t2l-sft[{group}]"][t]["score"] for t in tasks}
        by_family = defaultdict(list)
        for t, v in scores.items():
            by_family[family[t]].append(v)
        out[f"{group}_task_avg"] = statistics.mean(scores.values())
        out[f"{group}_family_avg"] = statistics.mean(statistics.mean(v) for v in by_family.values())
        out[f"per_task_{group}"] = scores
    out["train_minus_random_ci"] = claims.paired_intervals(claims.per_instance_scores(results), "t2l-sft[train]",
                                                           "t2l-sft[random]", tasks)
    return out


def main() -> int:
    library = TaskLibrary.load(default_library_dir())
    family = {t.name: t.source for t in library.tasks}
    out = {name: summarise(json.loads((HERE / d / "results.json").read_text()), family)
           for name, d in CANDIDATES.items()}
    (HERE / "validation.json").write_text(json.dumps(out, indent=1))
    old, new = out["shipped"], out["all-tasks"]
    ships = new["train_task_avg"] > old["train_task_avg"] and new["train_family_avg"] > old["train_family_avg"]
    for name, row in out.items():
        print(f"{name:>10}: own description {row['train_task_avg']:.1f} (tasks) {row['train_family_avg']:.1f} "
              f"(families); random strings {row['random_task_avg']:.1f}; own - random CI "
              + ("n/a" if row["train_minus_random_ci"] is None
                 else "[{:+.1f}, {:+.1f}]".format(*row["train_minus_random_ci"][:2])))
    print("ship the 272-task checkpoint" if ships else "keep the shipped checkpoint")
    return 0


if __name__ == "__main__":
    sys.exit(main())
