"""A small resumable stage runner for benchmark pipelines.

A :class:`Stage` is a command (run as a subprocess), the JSON-able inputs that determine its output, and a test
that its output exists. Its fingerprint is the sha256 of those inputs. The runner keeps one record per stage in
``<state_dir>/<name>.json``:

* record ``done`` with the same fingerprint and the output present: skipped;
* record ``running`` with the same fingerprint (the last run was interrupted): run again with the stage's
  ``resume_args`` when ``can_resume()`` says there is something to resume from, else from scratch;
* anything else (no record, other inputs, output gone): the stage's ``clean`` paths are removed, then it runs.

Downstream stages put what they read from upstream (a fingerprint, or a content hash of the output) into their
inputs, so a change reruns what depends on it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def fingerprint(inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Stage:
    name: str
    what: str  #: one line saying what the stage does
    command: list[str]
    inputs: dict[str, Any]
    done: Callable[[], bool]  #: is the output there?
    clean: list[Path] = field(default_factory=list)  #: removed before a fresh run
    resume_args: list[str] = field(default_factory=list)  #: appended when resuming an interrupted run
    can_resume: Callable[[], bool] = lambda: False

    @property
    def fingerprint(self) -> str:
        return fingerprint({"inputs": self.inputs, "command": self.command})


@dataclass
class Outcome:
    name: str
    status: str  #: "cached", "ran", "resumed"
    seconds: float  #: this run's time (0 when cached)
    original_seconds: float | None = None  #: the time the cached result took when it was made


class StageRunner:
    def __init__(self, state_dir: Path, *, force: tuple[str, ...] = (), dry_run: bool = False,
                 echo: Callable[[str], None] = print) -> None:
        self.state_dir = Path(state_dir)
        self.force, self.dry_run, self.echo = set(force), dry_run, echo
        self.outcomes: list[Outcome] = []

    def _record_path(self, name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        return self.state_dir / f"{safe}.json"

    def record(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._record_path(name).read_text())
        except (OSError, ValueError):
            return None

    def _write(self, name: str, record: dict[str, Any]) -> None:
        path = self._record_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    def status(self, stage: Stage) -> str:
        """``cached``, ``resume`` or ``fresh``: what :meth:`run` would do."""
        rec = self.record(stage.name)
        same = rec is not None and rec.get("fingerprint") == stage.fingerprint and stage.name not in self.force
        if same and rec.get("status") == "done" and stage.done():
            return "cached"
        if same and rec.get("status") == "running" and stage.resume_args and stage.can_resume():
            return "resume"
        return "fresh"

    def run(self, stage: Stage, index: int, total: int | str) -> Outcome:
        status = self.status(stage)
        head = f"[{index}/{total}] {stage.name}: {stage.what}"
        if status == "cached":
            took = (self.record(stage.name) or {}).get("seconds")
            self.echo(f"{head}\n      cached (inputs unchanged; took {_fmt_s(took)} when made)")
            outcome = Outcome(stage.name, "cached", 0.0, took)
            self.outcomes.append(outcome)
            return outcome
        command = stage.command + (stage.resume_args if status == "resume" else [])
        self.echo(f"{head}\n      {'resuming' if status == 'resume' else 'running'}: {shlex.join(command)}")
        if self.dry_run:
            outcome = Outcome(stage.name, "dry-run", 0.0)
            self.outcomes.append(outcome)
            return outcome
        if status == "fresh":
            for path in stage.clean:
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        previous = (self.record(stage.name) or {}).get("seconds_so_far", 0.0) if status == "resume" else 0.0
        started = time.perf_counter()
        self._write(stage.name, {"status": "running", "fingerprint": stage.fingerprint, "inputs": stage.inputs,
                                 "command": command, "started": _now(), "seconds_so_far": previous})
        sys.stdout.flush()
        proc = subprocess.run(command)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            self._write(stage.name, {"status": "running", "fingerprint": stage.fingerprint, "inputs": stage.inputs,
                                     "command": command, "failed": _now(), "seconds_so_far": previous + seconds})
            raise SystemExit(f"stage {stage.name} failed (exit {proc.returncode}) after {_fmt_s(seconds)}; "
                             "fix the cause and rerun: finished stages are kept, this one resumes")
        if not stage.done():
            raise SystemExit(f"stage {stage.name} finished but its output is missing")
        self._write(stage.name, {"status": "done", "fingerprint": stage.fingerprint, "inputs": stage.inputs,
                                 "command": command, "finished": _now(), "seconds": round(previous + seconds, 1)})
        self.echo(f"      done in {_fmt_s(seconds)}")
        outcome = Outcome(stage.name, "resumed" if status == "resume" else "ran", seconds)
        self.outcomes.append(outcome)
        return outcome

    def summary(self) -> list[str]:
        lines = [f"  {'stage':<44} {'status':<8} {'this run':>9} {'when made':>10}"]
        for o in self.outcomes:
            lines.append(f"  {o.name:<44} {o.status:<8} {_fmt_s(o.seconds):>9} {_fmt_s(o.original_seconds):>10}")
        total = sum(o.seconds for o in self.outcomes)
        lines.append(f"  {'total':<44} {'':<8} {_fmt_s(total):>9}")
        return lines


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
