"""Copy a training run's records into the repository, so that they outlive $TEXT2LORA_HOME (runs are not committed).

    python scripts/publish_run.py $TEXT2LORA_HOME/runs/v2-short/R4 docs/quality/v2-recipe/short-runs/R4
    python scripts/publish_run.py $TEXT2LORA_HOME/runs/sft-v2 docs/quality/v2-recipe/long-run

Copies ``metrics.jsonl``, ``gen_val.jsonl`` and ``summary.json`` (those the run has written so far) and draws
``loss.png`` from the metrics, so a run still going can be published and committed as it goes. Checkpoints stay where
they are: only records travel. Prints the last step and the last validation-by-generation scores it copied.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from text2lora.train.metrics_log import plot_curves, read_metrics

RECORDS = ("metrics.jsonl", "gen_val.jsonl", "summary.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory (text2lora train ... --out RUN)")
    parser.add_argument("dest", type=Path, help="where its records go (created)")
    args = parser.parse_args(argv)
    if not (args.run / "metrics.jsonl").is_file():
        print(f"error: {args.run} has no metrics.jsonl (is it a training run's directory?)", file=sys.stderr)
        return 2
    args.dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in RECORDS:
        if (args.run / name).is_file():
            shutil.copyfile(args.run / name, args.dest / name)
            copied.append(name)
    if plot_curves(args.dest) is not None:
        copied.append("loss.png")
    rows = read_metrics(args.dest)
    steps = [r["step"] for r in rows if isinstance(r.get("step"), int)]
    gen = [r for r in rows if "gen_score" in r]
    print(f"{args.dest}: {', '.join(copied)}; last step {max(steps) if steps else '-'}")
    if gen:
        last = gen[-1]
        extra = {k: round(v, 4) for k, v in last.items() if k.startswith("gen_") and isinstance(v, float)}
        print(f"  last validation by generation (step {last['step']}): {json.dumps(extra)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
