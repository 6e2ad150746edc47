"""The tasks an evaluation scores: library tasks (their test split, capped) or one user JSONL task file.

An :class:`EvalTask` holds the task, which side of the split it is on (``seen``, ``unseen``, or ``user``),
the instances to score and where ``icl3`` takes its examples from: instances outside the scored ones (training,
validation, or the rest of the test split); when there are too few of those, each instance gets shots drawn
from the other scored instances (leave-one-out), never itself.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from text2lora.data.library import TaskLibrary
from text2lora.data.task import MULTIPLE_CHOICE, Instance, Task
from text2lora.errors import Text2LoraError

USER = "user"
#: How many bad lines of a task file the error message quotes.
_QUOTED_PROBLEMS = 3


@dataclass
class EvalTask:
    task: Task
    split: str  #: "seen", "unseen" or "user"
    instances: list[Instance]  #: the scored instances
    pool: list[Instance] = field(default_factory=list)  #: ICL examples from outside the scored instances

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def metric(self) -> str:
        return self.task.metric

    @property
    def headline(self) -> str:
        """The metric a report leads with: accuracy (multiple choice), strict exact match (short answers, see
        :func:`text2lora.eval.metrics.is_short_answer`) or ROUGE-L (long-form)."""
        from text2lora.eval.metrics import is_short_answer

        if self.metric == MULTIPLE_CHOICE:
            return "accuracy"
        refs = [i.references or [i.output] for i in self.instances]
        return "strict_exact_match" if is_short_answer(refs) else "rouge_l"

    def shots(self, index: int, k: int, seed: int) -> list[Instance]:
        """``k`` ICL examples for scored instance ``index`` (the same for every instance when the pool allows)."""
        if k == 0:
            return []
        if len(self.pool) >= k:
            return random.Random(f"{seed}/{self.name}/shots").sample(self.pool, k)
        others = [inst for i, inst in enumerate(self.instances) if i != index]
        rng = random.Random(f"{seed}/{self.name}/shots/{index}")
        return rng.sample(others, min(k, len(others)))

    def fingerprint(self) -> str:
        """Changes when the scored instances or the metric change."""
        return _digest({"metric": self.metric, "instances": [i.to_json() for i in self.instances]})

    def shots_fingerprint(self, k: int, seed: int) -> str:
        """Changes when the ICL examples of any scored instance change."""
        return _digest([[s.to_json() for s in self.shots(i, k, seed)] for i in range(len(self.instances))])


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def select_library_tasks(library: TaskLibrary, tasks: str, max_tasks: int | None, max_instances: int) -> list[EvalTask]:
    """Library tasks by selector (``all``, ``seen``, ``unseen`` or names); seen before unseen, by name."""
    if tasks in ("all", "seen", "unseen"):
        chosen: list[Task] = []
        for split in ("seen", "unseen"):
            if tasks in ("all", split):
                side = sorted(library.seen() if split == "seen" else library.unseen(), key=lambda t: t.name)
                chosen += side[:max_tasks] if max_tasks else side
    else:
        names = [n.strip() for n in tasks.split(",") if n.strip()]
        if not names:
            raise Text2LoraError("{tasks} is empty: give all, seen, unseen or task names")
        chosen = [library.task(n) for n in dict.fromkeys(names)]
    out = []
    for task in chosen:
        test = library.instances(task.name, "test")
        if not test:
            continue
        rest = library.instances(task.name, "train") + library.instances(task.name, "validation")
        out.append(EvalTask(task, task.split or "seen", test[:max_instances], rest + test[max_instances:]))
    if not out:
        raise Text2LoraError(f"no tasks with test instances for {{tasks}} {tasks!r} in {library.root}")
    return out


def load_task_file(path: str | Path, description: str | None, max_instances: int) -> EvalTask:
    """A user JSONL task (``{"input", "output"}`` or ``{"input", "options", "answer"}`` per line).

    Any bad line is an error naming the line: scoring a silently shortened file would mislead.
    """
    from text2lora.data.loaders import load_jsonl

    path = Path(path)
    if not path.is_file():
        raise Text2LoraError(f"task file not found: {path}")
    if path.suffix != ".jsonl":
        raise Text2LoraError(f"{path}: a task file is JSON Lines (.jsonl), one instance per line")
    result = load_jsonl(path, description=description)
    if result.problems:
        problems = result.problems
        more = f" (and {len(problems) - _QUOTED_PROBLEMS} more)" if len(problems) > _QUOTED_PROBLEMS else ""
        raise Text2LoraError("bad task file: " + "; ".join(str(p) for p in problems[:_QUOTED_PROBLEMS]) + more)
    data = result.tasks[0]
    return EvalTask(data.task, USER, data.instances[:max_instances], data.instances[max_instances:])
