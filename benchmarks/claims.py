"""The quality benchmark's claims, checked against a report's ``results.json``.

    python benchmarks/claims.py runs/bench-quality-small/report     # writes claims.md there, prints it

Each claim is the comparison the paper makes (and issue 5 asks for), with the numbers on both sides and whether it
holds. Scores are the report's: ROUGE-L (generation) or length-normalised accuracy (multiple choice), x100,
averaged over the tasks of a split. T2L columns are named ``t2l-sft[group]``: ``train`` is the task's own
description, ``heldout`` descriptions never trained on, ``random`` random letters shaped like the description.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

#: "Aligned beats random by a clear margin": at least this many points (x100) on the average of a split.
CLEAR_MARGIN = 2.0


@dataclass
class Claim:
    text: str
    left: str  #: column
    right: str  #: column
    split: str
    kind: str  #: ">=", ">", "ratio>=0.98", "margin"

    def check(self, avg: dict, per_task: dict, tasks: list[dict]) -> tuple[str, str]:
        left, right = _score(avg, self.left, self.split), _score(avg, self.right, self.split)
        if left is None or right is None:
            missing = self.left if left is None else self.right
            return "not measured", f"no `{missing}` scores on {self.split} tasks"
        figures = f"{self.left} {left:.1f} vs {self.right} {right:.1f}"
        if self.kind == "ratio>=0.98":
            ratio = left / right if right else float("inf")
            return _verdict(ratio >= 0.98), f"{figures}: {100 * ratio:.1f}% (needs >= 98%)"
        if self.kind == "margin":
            names = [t["name"] for t in tasks if t["split"] == self.split]
            wins = sum(1 for n in names if _task(per_task, self.left, n) is not None
                       and _task(per_task, self.right, n) is not None
                       and _task(per_task, self.left, n) > _task(per_task, self.right, n))
            losses = sum(1 for n in names if _task(per_task, self.left, n) is not None
                         and _task(per_task, self.right, n) is not None
                         and _task(per_task, self.left, n) < _task(per_task, self.right, n))
            diff = left - right
            return (_verdict(diff >= CLEAR_MARGIN and wins > losses),
                    f"{figures}: {diff:+.1f} points (needs >= +{CLEAR_MARGIN:.0f}); better on {wins} tasks, "
                    f"worse on {losses}")
        holds = left >= right if self.kind == ">=" else left > right
        return _verdict(holds), f"{figures} ({left - right:+.1f})"


CLAIMS = [
    Claim("seen: T2L-recon reaches >= 98% of the per-task LoRAs", "t2l-recon[train]", "task-lora", "seen",
          "ratio>=0.98"),
    Claim("seen: T2L-SFT >= multi-task LoRA", "t2l-sft[train]", "multitask-lora", "seen", ">="),
    Claim("unseen: T2L-SFT > multi-task LoRA", "t2l-sft[train]", "multitask-lora", "unseen", ">"),
    Claim("unseen: multi-task LoRA > base", "multitask-lora", "base", "unseen", ">"),
    Claim("unseen: T2L-SFT > base", "t2l-sft[train]", "base", "unseen", ">"),
    Claim("unseen: T2L-SFT > base + description in the prompt", "t2l-sft[train]", "desc-prompt", "unseen", ">"),
    Claim("unseen: T2L-SFT from held-out descriptions > multi-task LoRA", "t2l-sft[heldout]", "multitask-lora",
          "unseen", ">"),
    Claim("seen: aligned descriptions beat random strings clearly (T2L-SFT)", "t2l-sft[train]", "t2l-sft[random]",
          "seen", "margin"),
    Claim("unseen: aligned descriptions beat random strings clearly (T2L-SFT)", "t2l-sft[train]",
          "t2l-sft[random]", "unseen", "margin"),
    Claim("unseen: aligned descriptions beat other tasks' descriptions (T2L-SFT)", "t2l-sft[train]",
          "t2l-sft[other]", "unseen", ">"),
]


def _verdict(holds: bool) -> str:
    return "holds" if holds else "DOES NOT HOLD"


def _score(avg: dict, column: str, split: str) -> float | None:
    value = avg.get(column, {}).get(split, {}).get("score")
    return None if value is None else 100 * value


def _task(per_task: dict, column: str, task: str) -> float | None:
    value = per_task.get(column, {}).get(task, {}).get("score")
    return None if value is None else 100 * value


def check(report_dir: Path) -> str:
    results = json.loads((report_dir / "results.json").read_text())
    lines = ["# Claims of the quality benchmark", "",
             f"Checked by `benchmarks/claims.py` against `{(report_dir / 'results.json').name}` "
             f"({results.get('created', '?')}). Scores x100; averages over the tasks of a split.", "",
             "| claim | verdict | figures |", "|---|---|---|"]
    for claim in CLAIMS:
        verdict, figures = claim.check(results["averages"], results["per_task"], results["tasks"])
        lines.append(f"| {claim.text} | {verdict} | {figures} |")
    return "\n".join(lines) + "\n"


def write(report_dir: Path) -> str:
    """Check the claims against ``report_dir/results.json``, write ``claims.md`` there and return its text."""
    text = check(report_dir)
    (report_dir / "claims.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not (Path(argv[0]) / "results.json").is_file():
        print("usage: python benchmarks/claims.py REPORT_DIR   (a directory with results.json)", file=sys.stderr)
        return 2
    print(write(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
