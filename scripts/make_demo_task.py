"""Write the task `text2lora demo` runs on when no task is named: a few test instances of one unseen library task.

    python scripts/make_demo_task.py --task gem.asset --n 6

The file (``src/text2lora/demo_task.json``) carries the task's own description, its source and licence, and the
first N instances of its test split, so the demo runs without a prepared task library. The task must be unseen:
no hypernetwork we ship was trained on it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from text2lora.data.library import TaskLibrary

OUT = Path(__file__).resolve().parents[1] / "src" / "text2lora" / "demo_task.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--library", default=None)
    args = parser.parse_args()
    lib = TaskLibrary.load(args.library)
    task = lib.task(args.task)
    if task.split != "unseen":
        raise SystemExit(f"{task.name} is a {task.split} task; the demo task must be unseen")
    instances = lib.instances(task.name, "test")[: args.n]
    data = {
        "task": task.name,
        "split": task.split,
        "metric": task.metric,
        "source": f"{task.origin}: {task.name}, test split",
        "license": task.license,
        "description": task.description,
        "instances": [inst.to_json() for inst in instances],
    }
    OUT.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {task.name}, {len(instances)} instances")


if __name__ == "__main__":
    main()
