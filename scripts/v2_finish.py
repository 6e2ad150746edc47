"""After the long run: every figure issues 15 and 16 ask for, in the order PLAN.md fixed, one resumable queue:

    python scripts/v2_finish.py --dry-run      # what is done, what would run next, nothing run
    python scripts/v2_finish.py [--threads 2]  # run what is left, in order

It starts only when the long run has finished (``runs/sft-v2/summary.json``) and the side queue has made the
shipped checkpoint's validation report and scored the final baselines on every side (``scripts/v2_side_queue.py``),
so that nothing here runs beside it in the same work dir. Then, in the final
work dir (``runs/bench-quality-v2-final``, always with ``--multitask-steps 8000`` so its multi-task LoRA is the
final baseline and never retrained at 800 steps) and with the long run's ``best/`` as the T2L checkpoint:

1. ``candidate-validation``: the candidate scored on the validation tasks beside the cached baselines;
2. ``ship-decision``: ``benchmarks/ship_rule.py`` (PLAN.md's rule, written before these numbers) into
   ``docs/quality/v2-recipe/ship-decision``;
3. ``test``: the test split, scored once, after the decision, whatever it was (PLAN.md);
4. ``seen``: the seen side (per-task LoRAs, T2L-recon, T2L, base, multi-task LoRA);
5. ``claims``: ``benchmarks/claims.py`` on each of the three reports;
6. ``publish``: each report and its claims copied into ``docs/quality/v2-recipe/final/<split>/``.

Shipping itself stays a person's step, one command: if the decision says ship, ``scripts/ship_checkpoint.py``
copies ``best/`` into ``src/text2lora/checkpoints/default`` with a model card made from the reports and picks
``make demo``'s unseen task from the validation report; the script prints the command at the end.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from v2_side_queue import (  # noqa: E402  (one queue runner)
    FINAL_MULTITASK_STEPS, ROOT, Step, baselines_scored, home_dir, run_steps)

QUALITY = ROOT / "benchmarks" / "quality.py"
SHIP_RULE = ROOT / "benchmarks" / "ship_rule.py"
CLAIMS = ROOT / "benchmarks" / "claims.py"
DOCS = ROOT / "docs" / "quality" / "v2-recipe"
SPLITS = ("validation", "test", "seen")
PUBLISHED = ("results.md", "results.json", "results.png", "claims.md")


def scored(results: dict, checkpoint: Path) -> bool:
    """Whether a report's ``results`` scored ``checkpoint`` as its T2L (a report of another checkpoint is not it).
    Shared with ``scripts/ship_checkpoint.py``."""
    paths = [m.get("path") for m in results.get("methods", []) if m.get("kind") == "t2l"]
    return any(p is not None and Path(p).resolve() == checkpoint.resolve() for p in paths)


def _scored_with(report: Path, checkpoint: Path) -> bool:
    """Whether ``report`` exists and scored ``checkpoint`` as its T2L."""
    try:
        results = json.loads((report / "results.json").read_text())
    except (OSError, ValueError):
        return False
    return scored(results, checkpoint)


def _claims_current(report: Path) -> bool:
    results, claims = report / "results.json", report / "claims.md"
    return claims.is_file() and results.is_file() and claims.stat().st_mtime >= results.stat().st_mtime


def _published(report: Path, dest: Path) -> bool:
    return all((dest / name).is_file() and (dest / name).read_bytes() == (report / name).read_bytes()
               for name in PUBLISHED if (report / name).is_file()) and (dest / "results.json").is_file()


def preconditions(home: Path) -> list[str]:
    """What must exist before the queue starts (empty: ready)."""
    runs = home / "runs"
    missing = []
    if not (runs / "sft-v2" / "summary.json").is_file():
        missing.append(f"the long run has not finished ({runs / 'sft-v2'} has no summary.json): "
                       "`python scripts/v2_long_run.py` resumes it")
    if not (runs / "bench-quality-v2-shipped" / "report-validation" / "results.json").is_file():
        missing.append("the shipped checkpoint's validation report: `python scripts/v2_side_queue.py`")
    for split in SPLITS:
        if not baselines_scored(runs / "bench-quality-v2-final", split):
            missing.append(f"the final baselines' {split} scores: `python scripts/v2_side_queue.py`")
    return missing


def plan(home: Path, threads: int, python: str = sys.executable) -> list[Step]:
    runs = home / "runs"
    final, shipped, best = runs / "bench-quality-v2-final", runs / "bench-quality-v2-shipped", runs / "sft-v2" / "best"
    q = [python, str(QUALITY), "--scale", "v2", "--threads", str(threads), "--work", str(final),
         "--multitask-steps", str(FINAL_MULTITASK_STEPS), "--t2l-checkpoint", str(best)]
    report = {split: final / f"report-{split}" for split in SPLITS}
    decision = DOCS / "ship-decision"
    steps = [
        Step("candidate-validation", q + ["--split", "validation"], _scored_with(report["validation"], best)),
        Step("ship-decision", [python, str(SHIP_RULE), "--candidate", str(report["validation"]), "--shipped",
                               str(shipped / "report-validation"), "--out", str(decision)],
             (decision / "ship-decision.json").is_file() and _scored_with(report["validation"], best)
             and (decision / "ship-decision.json").stat().st_mtime
             >= (report["validation"] / "results.json").stat().st_mtime),
        Step("test", q + ["--split", "test"], _scored_with(report["test"], best)),
        Step("seen", q + ["--split", "seen"], _scored_with(report["seen"], best)),
    ]
    steps += [Step(f"claims-{split}", [python, str(CLAIMS), str(report[split])], _claims_current(report[split]))
              for split in SPLITS]
    steps += [Step(f"publish-{split}", None, _published(report[split], DOCS / "final" / split),
                   action=functools.partial(_publish, report[split], DOCS / "final" / split),
                   shown=f"copy {report[split]} -> {DOCS / 'final' / split}") for split in SPLITS]
    return steps


def _publish(report: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in PUBLISHED:
        if (report / name).is_file():
            shutil.copyfile(report / name, dest / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print each step and whether it is done; run nothing")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the scoring (default 2: by then "
                        "nothing else trains)")
    args = parser.parse_args(argv)
    home = home_dir()
    missing = preconditions(home)
    if missing and not args.dry_run:
        print("error: not ready:\n" + "\n".join(f"  - {m}" for m in missing), file=sys.stderr)
        return 2
    for m in missing:
        print(f"[wait] {m}")
    rc = run_steps(plan(home, args.threads), {**os.environ, "OMP_NUM_THREADS": str(args.threads)}, args.dry_run)
    if rc != 0:
        return rc
    if not args.dry_run:
        decision = json.loads((DOCS / "ship-decision" / "ship-decision.json").read_text())
        print("\nship decision:", "SHIP the candidate" if decision["ship"] else "keep the shipped checkpoint")
        if decision["ship"]:
            print(f"next: python scripts/ship_checkpoint.py --checkpoint {home / 'runs' / 'sft-v2' / 'best'} "
                  "--seen docs/quality/v2-recipe/final/seen --dry-run, then again without --dry-run, `make demo`, "
                  "and commit")
        print("commit docs/quality/v2-recipe/final and ship-decision, then write the issues' notes from claims.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
