"""Write the task `text2lora demo` runs on when no task is named: a few test instances of one unseen library task.

    python scripts/make_demo_task.py --task gem.asset --n 6

The file (``src/text2lora/demo_task.json``) carries the task's own description, its source and licence, the
first N instances of its test split, and up to 8 worked examples from outside them (``text2lora demo --shots K``
gives the first K to a checkpoint trained with examples), so the demo runs without a prepared task library. The
task must be unseen: no hypernetwork we ship was trained on it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from text2lora.cli.demo import task_examples
from text2lora.data.library import TaskLibrary
from text2lora.errors import Text2LoraError

OUT = Path(__file__).resolve().parents[1] / "src" / "text2lora" / "demo_task.json"


def build(task_name: str, n: int = 6, library: str | None = None) -> dict:
    """The demo task file's content for ``task_name`` (an unseen task of the library): its first ``n`` test
    instances, and up to 8 examples drawn at random (seed fixed) from the task's other instances, as ``text2lora
    eval`` draws icl3's shots. ValueError for a seen task or one with no test instances."""
    lib = TaskLibrary.load(library)
    task = lib.task(task_name)
    if task.split != "unseen":
        raise ValueError(f"{task.name} is a {task.split} task; the demo task must be unseen")
    instances = lib.instances(task.name, "test")[:n]
    if not instances:
        raise ValueError(f"{task.name} has no test instances")
    return {
        "task": task.name,
        "split": task.split,
        "metric": task.metric,
        "source": f"{task.origin}: {task.name}, test split",
        "license": task.license,
        "description": task.description,
        "instances": [inst.to_json() for inst in instances],
        "shots": [e.to_json() for e in task_examples(lib, task.name, n)],
    }


def write(data: dict, out: Path = OUT) -> Path:
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}: {data['task']}, {len(data['instances'])} instances, {len(data.get('shots', []))} examples")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--library", default=None)
    args = parser.parse_args()
    try:
        write(build(args.task, args.n, args.library))
    except (ValueError, Text2LoraError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
