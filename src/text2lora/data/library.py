"""The task library on disk, and :class:`TaskLibrary` to read it.

Layout of a library directory (default ``$TEXT2LORA_HOME/library``)::

    index.json                 {"format": 1, "meta": {...}, "tasks": [Task JSON ...], "dropped": [{"name", "reason"}]}
    tasks/<name>.jsonl         one Instance JSON per line, plus "split": "train" | "validation" | "test"
    descriptions/<name>.json   written by `text2lora data describe` (its cache; merged into index.json)

Tasks without a describe cache get the descriptions that ship in ``text2lora/data/descriptions/<origin>.json``
(:func:`shipped_descriptions`, written by :func:`text2lora.data.describe.export_descriptions`), so every clone builds the same library.

``meta`` records how the library was built: sources (with sha256), tokenizer, budget, seed, split settings.
Every file is written atomically; ``index.json`` is written last, so a library with an index is complete.

``TaskLibrary.load(dir)`` then ``.tasks``, ``.task(name)``, ``.instances(name, split=None)``, ``.seen()``,
``.unseen()``, ``.meta``, ``.dropped``.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from pathlib import Path
from typing import Any

from text2lora.data.task import SPLITS, Instance, Task, check_task_name, heldout_of
from text2lora.errors import Text2LoraError
from text2lora.paths import atomic_write_text, home, read_json, write_json

INDEX = "index.json"
FORMAT_VERSION = 1


def default_library_dir() -> Path:
    return home() / "library"


def task_file(root: Path, name: str) -> Path:
    return Path(root) / "tasks" / f"{check_task_name(name)}.jsonl"


def descriptions_file(root: Path, name: str) -> Path:
    return Path(root) / "descriptions" / f"{check_task_name(name)}.json"


def write_task_instances(root: Path, name: str, instances: list[Instance], splits: list[str]) -> None:
    """Write one task's instances (with their split labels) as JSONL, atomically."""
    lines = []
    for inst, split in zip(instances, splits, strict=True):
        obj = inst.to_json()
        obj["split"] = split
        lines.append(json.dumps(obj, ensure_ascii=False, sort_keys=True))
    path = task_file(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")


SHIPPED_DIR = Path(__file__).parent / "descriptions"
"""The descriptions that ship with text2lora: one JSON file per task source (see :func:`shipped_descriptions`)."""
SHIPPED_FORMAT = 1


def shipped_file(origin: str, shipped_dir: Path | None = None) -> Path:
    return (SHIPPED_DIR if shipped_dir is None else Path(shipped_dir)) / f"{origin}.json"


@functools.lru_cache(maxsize=None)
def shipped_descriptions(origin: str, shipped_dir: Path | None = None) -> dict[str, Any]:
    """The committed descriptions of one source (``{"written_by": settings, "tasks": {name: {...}}}``, empty when
    none ship). They are what ``text2lora data describe`` wrote with ``written_by``'s settings, so a fresh clone
    gets them, byte for byte, without running a model. ``shipped_dir`` reads another folder of such files instead
    (e.g. an older commit's, to rebuild a library as it was then)."""
    path = shipped_file(origin, shipped_dir)
    if not path.is_file():
        return {"written_by": None, "tasks": {}}
    data = read_json(path, "shipped descriptions")
    if not isinstance(data, dict) or data.get("format") != SHIPPED_FORMAT or not isinstance(data.get("tasks"), dict):
        raise Text2LoraError(f"{path} is not a format-{SHIPPED_FORMAT} descriptions file")
    return data


def description_record(root: Path, task: Task, shipped_dir: Path | None = None) -> dict[str, Any] | None:
    """A task's generated descriptions: the library's own describe cache if it has one, else the shipped ones
    (from ``shipped_dir`` when given)."""
    path = descriptions_file(root, task.name)
    if path.is_file():
        return read_json(path, "description cache")
    shipped = shipped_descriptions(task.origin, shipped_dir)
    record = shipped["tasks"].get(task.name)
    return None if record is None else {"settings": shipped["written_by"], **record}


def apply_descriptions(root: Path, task: Task, shipped_dir: Path | None = None) -> Task:
    """Fill a task's descriptions from its describe cache or the shipped file (own description kept first)."""
    record = description_record(root, task, shipped_dir)
    if record is None:
        return task
    own = task.description
    train = [d for d in record.get("descriptions", []) if d != own]
    task.descriptions = [own, *train]
    task.heldout_descriptions = heldout_of(record)
    return task


def write_index(root: Path, tasks: list[Task], *, meta: dict[str, Any], dropped: list[dict[str, str]]) -> None:
    index = {
        "format": FORMAT_VERSION,
        "meta": meta,
        "tasks": [t.to_json() for t in sorted(tasks, key=lambda t: t.name)],
        "dropped": sorted(dropped, key=lambda d: d["name"]),
    }
    write_json(Path(root) / INDEX, index)


class TaskLibrary:
    """Read access to a prepared task library."""

    def __init__(self, root: Path, index: dict[str, Any]):
        self.root = Path(root)
        self.meta: dict[str, Any] = index.get("meta", {})
        self.dropped: list[dict[str, str]] = index.get("dropped", [])
        self.tasks: list[Task] = [Task.from_json(t) for t in index.get("tasks", [])]
        self._by_name = {t.name: t for t in self.tasks}
        self._cache: dict[str, list[tuple[str, Instance]]] = {}

    @classmethod
    def load(cls, root: str | os.PathLike | None = None) -> TaskLibrary:
        root = Path(root) if root is not None else default_library_dir()
        path = root / INDEX
        if not path.is_file():
            raise Text2LoraError(f"no task library at {root}: run `text2lora data prepare` first")
        index = read_json(path, "task library index")
        if not isinstance(index, dict) or index.get("format") != FORMAT_VERSION:
            raise Text2LoraError(f"{path} is not a format-{FORMAT_VERSION} task library index")
        return cls(root, index)

    def __len__(self) -> int:
        return len(self.tasks)

    def task(self, name: str) -> Task:
        try:
            return self._by_name[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._by_name, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise Text2LoraError(f"no task {name!r} in {self.root}{hint}") from None

    def seen(self) -> list[Task]:
        return [t for t in self.tasks if t.split == "seen"]

    def unseen(self) -> list[Task]:
        return [t for t in self.tasks if t.split == "unseen"]

    def instances(self, name: str, split: str | None = None) -> list[Instance]:
        """A task's instances, all of them or one split's (``train`` / ``validation`` / ``test``)."""
        if split is not None and split not in SPLITS:
            raise Text2LoraError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        rows = self._rows(self.task(name).name)
        return [inst for s, inst in rows if split is None or s == split]

    def _rows(self, name: str) -> list[tuple[str, Instance]]:
        if name not in self._cache:
            path = task_file(self.root, name)
            rows = []
            try:
                with open(path, encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        if not line.strip():
                            continue
                        try:
                            obj = json.loads(line)
                            rows.append((obj.get("split", "train"), Instance.from_json(obj)))
                        except (json.JSONDecodeError, KeyError, ValueError, TypeError, RecursionError) as e:
                            raise Text2LoraError(f"{path}:{lineno}: bad instance ({e})") from None
            except OSError as e:
                raise Text2LoraError(f"cannot read {path}: {e.strerror or e}") from None
            self._cache[name] = rows
        return self._cache[name]


def library_fingerprint(root: str | os.PathLike | None, *, with_descriptions: bool = True) -> str | None:
    """A short content hash of a library's index (None without one); ``with_descriptions=False`` leaves the
    generated descriptions out, so that describing more tasks does not change it."""
    import hashlib

    path = Path(root if root is not None else default_library_dir()) / INDEX
    if not path.is_file():
        return None
    if with_descriptions:
        from text2lora.paths import sha256_file

        return sha256_file(path)[:16]
    index = read_json(path, "task library index")
    for task in index.get("tasks", []):
        task.pop("heldout_descriptions", None)
        task.pop("eval_descriptions", None)  # its name in libraries built before the rename
        task["descriptions"] = task.get("descriptions", [])[:1]  # the task's own stays: it comes with the data
    return hashlib.sha256(json.dumps(index, sort_keys=True).encode()).hexdigest()[:16]


def refresh_descriptions(root: str | os.PathLike, shipped_dir: str | os.PathLike | None = None) -> int:
    """Merge every cached description file into ``index.json``; return how many tasks have generated ones.
    ``shipped_dir``: read the shipped descriptions from this folder instead of :data:`SHIPPED_DIR`."""
    root = Path(root)
    path = root / INDEX
    index = read_json(path, "task library index")
    shipped = None if shipped_dir is None else Path(shipped_dir)
    tasks = [apply_descriptions(root, Task.from_json(t), shipped) for t in index.get("tasks", [])]
    index["tasks"] = [t.to_json() for t in tasks]
    write_json(path, index)
    return sum(1 for t in tasks if len(t.descriptions) > 1 or t.heldout_descriptions)
