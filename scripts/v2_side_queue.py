"""The second core's work for issues 15 and 16 while the long run trains on the first, one job after another:

    python scripts/v2_side_queue.py --dry-run   # what is done, what would run next, nothing run
    python scripts/v2_side_queue.py             # run what is left, in order (each step cached or resumable)

Every step is a `benchmarks/quality.py` stage set that does not depend on the long run, so an interrupted queue
picks up where it stopped (finished stages are cached, a training stage resumes from its checkpoint):

1. ``seen-loras``: the v2 seen side's per-task LoRAs (`--split seen --only lora:`) in the shared work dir;
2. ``seen-recon``: T2L-recon trained on those LoRAs (`--split seen --only t2l-recon`), before the copy of step 4 so
   the final work dir's seen report finds it;
3. ``shipped-validation``: the shipped checkpoint on the validation tasks (`--methods t2l`, a work dir of its own),
   the "shipped" side of the ship rule (`benchmarks/ship_rule.py`);
4. ``final-copy``: the final work dir, a copy of the shared one, so that the final baseline never replaces the
   800-step multi-task LoRA the long run reads as ``init_lora``;
5. ``final-validation``: there, the final multi-task LoRA baseline (up to 8,000 steps, early stopping: issue 16
   item 4), then base, desc-prompt, icl3 and that LoRA scored on the validation tasks, cached for the candidate's
   report;
6. ``final-test-baselines`` and ``final-seen-baselines``: the same baselines (and, on the seen side, the per-task
   LoRAs and T2L-recon) scored on the test and seen tasks into the final work dir's score cache, so that
   ``scripts/v2_finish.py`` has only the long run's checkpoint left to score there. No decision reads these scores:
   the ship rule reads the validation report only, and T2L itself meets the test split once, after the decision
   (PLAN.md, "Fourth amendment").

Each runs with one torch thread; output goes to ``$TEXT2LORA_HOME/logs/side-queue.log`` when started in the
background (`nohup python scripts/v2_side_queue.py > $TEXT2LORA_HOME/logs/side-queue.log 2>&1 &`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUALITY = ROOT / "benchmarks" / "quality.py"
sys.path.insert(0, str(QUALITY.parent))

from stages import StageRunner  # noqa: E402  (the stage records quality.py writes, read the way it reads them)
FINAL_MULTITASK_STEPS = 8000  #: the long run's 64,000 examples at batch 8 (issue 16 item 4)
#: What the side queue scores on each side before the long run ends: everything but T2L (quality.py's method names).
BASELINES = {"validation": ("base", "desc-prompt", "icl3", "multitask-lora"),
             "test": ("base", "desc-prompt", "icl3", "multitask-lora"),
             "seen": ("base", "multitask-lora", "task-lora", "t2l-recon")}


@dataclass
class Step:
    name: str
    command: list[str] | None  #: None: ``action`` runs in Python instead
    done: bool
    action: Callable[[], None] | None = None
    shown: str = ""  #: what ``action`` does, for the listing


def home_dir() -> Path:
    return Path(os.environ.get("TEXT2LORA_HOME", Path.home() / ".cache" / "text2lora"))


def run_steps(steps: list[Step], env: dict[str, str], dry_run: bool) -> int:
    """List each step as done or todo and, unless ``dry_run``, run those to do in order; stop at the first failing
    command (its exit status), since a rerun resumes there. Shared with ``scripts/v2_finish.py``."""
    for step in steps:
        print(f"[{'done' if step.done else 'todo'}] {step.name}: {shlex.join(step.command) if step.command else step.shown}",
              flush=True)
        if step.done or dry_run:
            continue
        if step.command is None:
            step.action()
            continue
        rc = subprocess.call(step.command, cwd=ROOT, env=env)
        if rc != 0:
            print(f"error: {step.name} exited with {rc}; rerun this script to resume", file=sys.stderr)
            return rc
    return 0


def _copy_atomically(src: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=True)
    tmp.rename(dest)


def _stage_done(work: Path, stage: str) -> bool:
    return (StageRunner(work / "stages").record(stage) or {}).get("status") == "done"


def plan(home: Path, python: str = sys.executable) -> list[Step]:
    shared, shipped, final = (home / "runs" / name for name in
                              ("bench-quality-v2", "bench-quality-v2-shipped", "bench-quality-v2-final"))
    selection = shared / "seen-tasks.json"  # written by the seen side's select stage; else the committed side
    seen_tasks = (json.loads(selection.read_text())["eval"] if selection.is_file() else
                  [e["name"] for e in json.loads((ROOT / "benchmarks" / "v2" / "seen.json").read_text())["seen"]])
    q = [python, str(QUALITY), "--scale", "v2", "--threads", "1"]
    return [
        Step("seen-loras", q + ["--split", "seen", "--work", str(shared), "--only", "lora:"],
             all(_stage_done(shared, f"lora:{t}") for t in seen_tasks)),
        Step("seen-recon", q + ["--split", "seen", "--work", str(shared), "--only", "t2l-recon"],
             _stage_done(shared, "t2l-recon")),
        Step("shipped-validation", q + ["--split", "validation", "--work", str(shipped), "--methods", "t2l"],
             (shipped / "report-validation" / "results.json").is_file()),
        Step("final-copy", None, final.is_dir(), action=lambda: _copy_atomically(shared, final),
             shown=f"cp -a {shared} {final}"),
        *(Step(name, q + ["--split", split, "--work", str(final), "--multitask-steps", str(FINAL_MULTITASK_STEPS),
                          "--methods", ",".join(BASELINES[split])],
               _final_multitask_done(final) and baselines_scored(final, split))
          for name, split in (("final-validation", "validation"), ("final-test-baselines", "test"),
                              ("final-seen-baselines", "seen"))),
    ]


def _final_multitask_done(final: Path) -> bool:
    return _stage_done(final, "lora:_multitask") and _multitask_steps(final) == FINAL_MULTITASK_STEPS


def baselines_scored(final: Path, split: str) -> bool:
    """Whether the final work dir's ``split`` report has every baseline of that side, made with its final
    multi-task LoRA (a report older than that LoRA scored another one). Shared with ``scripts/v2_finish.py``."""
    results = final / f"report-{split}" / "results.json"
    lora = final / "lora-library" / "_multitask" / "adapter_model.safetensors"
    if not results.is_file():
        return False
    try:
        names = {m.get("name") for m in json.loads(results.read_text()).get("methods", [])}
    except (OSError, ValueError, AttributeError):
        return False
    fresh = not lora.is_file() or results.stat().st_mtime >= lora.stat().st_mtime
    return fresh and set(BASELINES[split]) <= names


def _multitask_steps(work: Path) -> int | None:
    """The steps the work dir's multi-task LoRA config asks for (None without one)."""
    import yaml

    config = work / "configs" / "lora-multitask.yaml"
    return yaml.safe_load(config.read_text())["loop"]["steps"] if config.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print each step and whether it is done; run nothing")
    args = parser.parse_args(argv)
    home = home_dir()
    shared = home / "runs" / "bench-quality-v2"
    if not (shared / "lora-library" / "_multitask" / "adapter_config.json").is_file():
        print(f"error: no v2 multi-task LoRA in {shared}: run `python benchmarks/quality.py --scale v2 --work "
              f"{shared} --only lora:_multitask` first (docs/quality/v2-recipe/README.md)", file=sys.stderr)
        return 2
    return run_steps(plan(home), {**os.environ, "OMP_NUM_THREADS": "1"}, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
