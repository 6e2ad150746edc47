"""What every task loader shares: :class:`LoadProblem` / :class:`LoadResult`, the ``Skip`` signal a parser raises
for an unusable file or task, and small helpers (names, JSON files). The loaders themselves:
:mod:`~text2lora.data.bigbench_json` (BIG-bench, Natural Instructions v1), :mod:`~text2lora.data.user_formats`
(Super-NaturalInstructions v2, JSONL), :mod:`~text2lora.data.evals_registry`; :mod:`~text2lora.data.loaders`
dispatches a path to them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text2lora.data.task import TaskData

FORMATS = ("auto", "bigbench", "ni1", "sni", "jsonl")
MAX_DEPTH = 6
"""Directory levels a load walks at most."""


@dataclass
class LoadProblem:
    """Why a file, a line or a task could not be used."""

    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.message}"


@dataclass
class LoadResult:
    tasks: list[TaskData] = field(default_factory=list)
    problems: list[LoadProblem] = field(default_factory=list)

    def extend(self, other: LoadResult) -> None:
        self.tasks.extend(other.tasks)
        self.problems.extend(other.problems)


class Skip(Exception):
    """Raised inside a loader: this file or task cannot be used (becomes a LoadProblem)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def sanitize_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", text.strip()).strip("._-")
    return name or "task"


def read_json_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise Skip(f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise Skip(f"not valid JSON ({e.msg}, column {e.colno})", line=e.lineno) from None
    except (RecursionError, ValueError) as e:  # nested too deep, an integer of too many digits
        raise Skip(f"not valid JSON ({'nested too deep' if isinstance(e, RecursionError) else str(e)[:80]})") from None


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
