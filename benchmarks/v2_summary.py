"""Summarise a v2 benchmark report: averages with copy rates, where a method echoes its input, by source.

    python benchmarks/v2_summary.py docs/quality/v2-baseline     # writes summary.md there and prints it

Reads the report's ``results.json`` (from ``quality.py --scale v2`` or the same ``text2lora eval``) and the task
library it names (for the inputs); every figure in ``summary.md`` is computed here, none is typed by hand.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ECHO = 0.3  #: a method "echoes" on a task when at least this share of its outputs repeat the input


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def contains_input(results: dict, library) -> dict[str, dict[str, float]]:
    """``{column: {task: share}}``: outputs that contain their whole input (normalised, inputs of 2+ words), a
    looser echo than the copy rate (the input repeated with more around it)."""
    inputs = {}
    for t in results["tasks"]:
        inputs[t["name"]] = [_norm(i.input) for i in library.instances(t["name"], "test")[: t["n"]]]
    shares: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in results["records"]:
        preds = rec["scores"].get("predictions")
        if not preds:
            continue
        pairs = [(_norm(p), x) for p, x in zip(preds, inputs[rec["task"]]) if len(x.split()) >= 2]
        if pairs:
            shares[rec["label"]][rec["task"]].append(sum(x in p for p, x in pairs) / len(pairs))
    return {c: {t: statistics.mean(v) for t, v in ts.items()} for c, ts in shares.items()}


def summarise(results: dict, benchmark: dict | None = None, library=None) -> str:
    per_task, columns = results["per_task"], results["columns"]
    contains = contains_input(results, library) if library is not None else {}
    tasks = [t["name"] for t in results["tasks"]]
    origin = {e["name"]: e["origin"] for side in ("test", "validation") for e in (benchmark or {}).get(side, [])}
    lines = ["| method | score | strict EM (generation) | accuracy (MC) | copy rate | contains input | tasks |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for col in columns:
        rows = [per_task.get(col, {}).get(t) for t in tasks]
        rows = [r for r in rows if r is not None]
        score = statistics.mean(r["score"] for r in rows)
        em = [r["strict_exact_match"] for r in rows if "strict_exact_match" in r]
        acc = [r["accuracy"] for r in rows if "accuracy" in r]
        copy = [r["copy_rate"] for r in rows if "copy_rate" in r]
        inside = list(contains.get(col, {}).values())
        cells = [f"{100 * score:.1f}"] + [f"{100 * statistics.mean(v):.1f}" if v else "–"
                                          for v in (em, acc, copy, inside)]
        lines.append(f"| {col} | " + " | ".join(cells) + f" | {len(rows)} |")
    lines += ["", f"Tasks where a method repeats the input in at least {ECHO:.0%} of its answers (copy rate):", ""]
    for col in columns:
        echoes = sorted(((per_task[col][t].get("copy_rate", 0.0), t) for t in tasks if t in per_task.get(col, {})),
                        reverse=True)
        listed = [f"{t} {100 * c:.0f}%" for c, t in echoes if c >= ECHO]
        loose = sorted(((v, t) for t, v in contains.get(col, {}).items() if v >= ECHO), reverse=True)
        lines.append(f"- **{col}**: " + (", ".join(listed) if listed else "none")
                     + ("; containing the input: " + ", ".join(f"{t} {100 * v:.0f}%" for v, t in loose)
                        if loose else ""))
    if origin:
        lines += ["", "Scores by task source:", "", "| method | " + " | ".join(sorted(set(origin.values()))) + " |",
                  "|---|" + "---:|" * len(set(origin.values()))]
        for col in columns:
            by = defaultdict(list)
            for t in tasks:
                if t in per_task.get(col, {}) and t in origin:
                    by[origin[t]].append(per_task[col][t]["score"])
            lines.append(f"| {col} | " + " | ".join(
                f"{100 * statistics.mean(by[o]):.1f} ({len(by[o])})" if by[o] else "–"
                for o in sorted(set(origin.values()))) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not (Path(argv[0]) / "results.json").is_file():
        print("usage: python benchmarks/v2_summary.py REPORT_DIR   (a directory with results.json)", file=sys.stderr)
        return 2
    report = Path(argv[0])
    bench_file = Path(__file__).resolve().parent / "v2" / "benchmark.json"
    bench = json.loads(bench_file.read_text()) if bench_file.is_file() else None
    from text2lora.data.library import TaskLibrary

    results = json.loads((report / "results.json").read_text())
    text = summarise(results, bench, TaskLibrary.load(results["config"].get("library")))
    (report / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
