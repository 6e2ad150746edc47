"""Start, or resume, issue 16's long run with the levers the short runs kept (docs/quality/v2-recipe/PLAN.md).

    python scripts/v2_long_run.py --dry-run     # the levers and the exact command, nothing run
    python scripts/v2_long_run.py               # start it, or resume it when its directory has a checkpoint

The levers come from ``docs/quality/v2-recipe/short-runs/short-runs.json`` (``benchmarks/short_runs.py``), never by
hand: R1 kept -> the AB offset from the v2 multi-task LoRA; R4 kept -> the examples conditioner trained in the same
run (else description only); R2, R3 and R5 only where they ran and were kept (the plan reports the others as not
tried, their levers off). It refuses to start before R0, R1 and R4 have finished, and on any library other than the
final library v2 (fingerprint 801fa692f69dd9ef), since the run's config fingerprints its descriptions. Training
output goes to ``$TEXT2LORA_HOME/logs/sft-v2.log``; publish the records as it goes with
``python scripts/publish_run.py $TEXT2LORA_HOME/runs/sft-v2 docs/quality/v2-recipe/long-run``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = ROOT / "docs" / "quality" / "v2-recipe" / "short-runs" / "short-runs.json"
CONFIG = ROOT / "configs" / "smollm2-sft-v2.yaml"
LIBRARY_FINGERPRINT = "801fa692f69dd9ef"
REQUIRED = ("R0", "R1", "R4")


def levers(summary: dict, multitask: Path) -> list[str]:
    """The ``--set`` overrides of the long run from the short runs' verdicts (raises ValueError if it can't start)."""
    runs = summary.get("runs", {})
    missing = [name for name in REQUIRED if runs.get(name, {}).get("status") != "finished"]
    if missing:
        raise ValueError(f"the plan starts the long run after R0, R1 and R4; not finished: {', '.join(missing)}")
    kept = {name: bool(entry.get("kept")) for name, entry in runs.items()}
    out: list[str] = []
    if kept.get("R1"):
        if not (multitask / "adapter_config.json").is_file():
            raise ValueError(f"R1 (the offset) was kept but there is no multi-task LoRA at {multitask}: train it with "
                             "`benchmarks/quality.py --scale v2 --only lora:_multitask`")
        out += ["hypernet.offset=true", f"init_lora={multitask}"]
    else:
        out += ["hypernet.offset=false"]
    if kept.get("R4"):  # the config's examples conditioner, k = 0 and examples alone in a quarter each
        out += ["data.shots_zero_prob=0.25", "data.shots_only_prob=0.25"]
        if kept.get("R5"):
            out += ["hypernet.examples.pooling=mean"]
    else:
        out += ["hypernet.examples=null", "data.shots_only_prob=0.0"]
    out += ["copy_downweight=1.0"] if kept.get("R2") else ["copy_downweight=0.0"]
    if kept.get("R3"):
        out += ["data.tasks_per_batch=4", "data.examples_per_task=2"]
    return out


def main(argv: list[str] | None = None) -> int:
    home = Path(os.environ.get("TEXT2LORA_HOME", Path.home() / ".cache" / "text2lora"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", type=Path, default=SUMMARY, help="the short runs' verdicts (short-runs.json)")
    parser.add_argument("--out", type=Path, default=home / "runs" / "sft-v2")
    parser.add_argument("--library", type=Path, default=home / "library")
    parser.add_argument("--multitask", type=Path, default=home / "runs" / "bench-quality-v2" / "lora-library" / "_multitask")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-every", type=int, default=50, help="steps between checkpoints (default 50, ~7 min "
                        "at 1 thread: a session's end kills the run and loses what came after the last one; how often "
                        "a run saves is not part of its fingerprint, so this may change at any resume)")
    parser.add_argument("--dry-run", action="store_true", help="print the levers and the command, run nothing")
    args = parser.parse_args(argv)
    try:
        summary = json.loads(args.summary.read_text())
        overrides = levers(summary, args.multitask)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from text2lora.data.library import library_fingerprint

    found = library_fingerprint(args.library)
    if found != LIBRARY_FINGERPRINT:
        print(f"error: the long run trains on library v2 with every shipped description ({LIBRARY_FINGERPRINT}); "
              f"{args.library} has {found} (run `text2lora data prepare --out {args.library}`)", file=sys.stderr)
        return 2
    overrides += [f"data.library={args.library}", f"loop.threads={args.threads}", f"loop.save_every={args.save_every}"]
    cmd = [sys.executable, "-m", "text2lora", "train", "sft", "--config", str(CONFIG), "--out", str(args.out)]
    for item in overrides:
        cmd += ["--set", item]
    if any(args.out.glob("ckpt-*")):
        cmd.append("--resume")
    print(" ".join(shlex.quote(c) for c in cmd))
    if args.dry_run:
        return 0
    (home / "logs").mkdir(parents=True, exist_ok=True)
    with open(home / "logs" / "sft-v2.log", "ab") as logf:
        return subprocess.call(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
