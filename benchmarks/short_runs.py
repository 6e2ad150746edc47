"""The v2 recipe's short runs, judged by the rule of docs/quality/v2-recipe/PLAN.md (written before their numbers).

    python benchmarks/short_runs.py --runs $TEXT2LORA_HOME/runs/v2-short --out docs/quality/v2-recipe/short-runs

Each run directory (R0, R1, ...) holds the ``gen_val.jsonl`` its training wrote: one ``t2l`` row per validation by
generation on the v2 *validation* tasks (strict exact match or accuracy, and the copy rate). A run's score is the
row at its last step. Against the control R0 every other run gets the paired bootstrap interval over tasks of its
per-task difference, and the plan's keep rule is applied:

- a lever is kept when its score is at least R0 + 1.0 point, or within 1.0 point of R0 with a copy rate at least
  5 points lower;
- R4 (the examples lever, scored at k = 0) is kept when its score is at least R0 - 1.0;
- R5 (mean pooling instead of R4's attention) is kept when its score with 3 examples is at least R4's + 1.0.

Runs that have not reached their last step are listed as unfinished and judged on nothing. A run whose hypernetwork
reads examples also shows its ``t2l+shots`` score (3 examples a task), which no rule reads. Writes ``short-runs.json``,
``short-runs.md`` and ``short-runs.png`` (validation score and copy rate against steps, one line a run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RUNS = {
    "R0": "control: description only, no offset, no copy weighting, no examples",
    "R1": "hypernet.offset with init_lora = the v2 multi-task LoRA (AB offset)",
    "R2": "copy_downweight 1.0",
    "R3": "tasks_per_batch 4, examples_per_task 2",
    "R4": "hypernet.examples, k = 0 in a quarter of the samples, examples alone in a quarter of the rest; "
          "scored at k = 0",
    "R5": "R4 with mean pooling instead of attention",
}
KEEP_GAIN, KEEP_BAND, KEEP_COPY, EXAMPLES_FLOOR = 1.0, 1.0, 5.0, 1.0
BOOTSTRAP, SEED = 10_000, 0


def read_rows(run_dir: Path, model: str = "t2l") -> list[dict]:
    """The ``model`` rows of a run's gen_val.jsonl, by step (a line a kill cut short is skipped)."""
    path = run_dir / "gen_val.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("model") == model and isinstance(row.get("step"), int):
                rows.append(row)
    return sorted(rows, key=lambda r: r["step"])


def run_steps(run_dir: Path) -> int | None:
    """The run's configured number of steps (the config.json of its newest checkpoint), None without one."""
    configs = sorted(run_dir.glob("ckpt-*/config.json")) or [run_dir / "config.json"]
    try:
        cfg = json.loads(configs[-1].read_text())
    except (OSError, ValueError):
        return None
    steps = ((cfg if isinstance(cfg, dict) else {}).get("loop") or {}).get("steps")
    return steps if isinstance(steps, int) else None


def per_task(row: dict) -> dict[str, float]:
    return {name: 100 * t["score"] for name, t in row["tasks"].items()}


def paired_interval(a: dict[str, float], b: dict[str, float]) -> tuple[float, float]:
    """95% bootstrap interval of mean(a - b) over the tasks both have, resampling tasks."""
    names = sorted(set(a) & set(b))
    diff = np.array([a[n] - b[n] for n in names])
    rng = np.random.default_rng(SEED)
    means = diff[rng.integers(0, len(diff), size=(BOOTSTRAP, len(diff)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def verdict(name: str, score: float, copy: float | None, r0_score: float, r0_copy: float | None) -> tuple[bool, str]:
    """The plan's keep rule for one run against the control."""
    delta = score - r0_score
    if name == "R4":
        kept = delta >= -EXAMPLES_FLOOR
        return kept, f"{delta:+.1f} against R0 (kept at >= -{EXAMPLES_FLOOR:.0f})"
    if delta >= KEEP_GAIN:
        return True, f"{delta:+.1f} against R0 (>= +{KEEP_GAIN:.0f})"
    if abs(delta) <= KEEP_BAND and copy is not None and r0_copy is not None and r0_copy - copy >= KEEP_COPY:
        return True, f"{delta:+.1f} against R0, copy rate {r0_copy - copy:.1f} points lower"
    return False, f"{delta:+.1f} against R0"


def summarise(runs_dir: Path) -> dict:
    out: dict = {"runs": {}}
    for name, what in RUNS.items():
        run_dir = runs_dir / name
        rows = read_rows(run_dir)
        steps = run_steps(run_dir)
        entry: dict = {"change": what, "dir": str(run_dir), "steps": steps,
                       "curve": [{"step": r["step"], "score": 100 * r["score"],
                                  "copy_rate": 100 * r["copy_rate"] if "copy_rate" in r else None} for r in rows]}
        finished = bool(rows) and steps is not None and rows[-1]["step"] >= steps
        entry["status"] = "finished" if finished else ("not run" if not rows else f"unfinished (step {rows[-1]['step']})")
        if finished:
            last = rows[-1]
            entry["score"] = 100 * last["score"]
            entry["copy_rate"] = 100 * last["copy_rate"] if "copy_rate" in last else None
            entry["per_task"] = per_task(last)
            shots = [r for r in read_rows(run_dir, model="t2l+shots") if r["step"] == last["step"]]
            if shots:  # reported beside the run; no rule reads it (PLAN.md, second amendment)
                entry["shots_score"] = 100 * shots[0]["score"]
                entry["shots_copy_rate"] = 100 * shots[0]["copy_rate"] if "copy_rate" in shots[0] else None
        out["runs"][name] = entry
    base = read_rows(runs_dir / "R0", model="base")
    if base:
        out["base"] = {"score": 100 * base[0]["score"],
                       "copy_rate": 100 * base[0]["copy_rate"] if "copy_rate" in base[0] else None}
    r0 = out["runs"]["R0"]
    if r0["status"] == "finished":
        for name, entry in out["runs"].items():
            if name in ("R0", "R5") or entry["status"] != "finished":
                continue
            lo, hi = paired_interval(entry["per_task"], r0["per_task"])
            kept, why = verdict(name, entry["score"], entry["copy_rate"], r0["score"], r0["copy_rate"])
            entry.update(delta=entry["score"] - r0["score"], interval=[lo, hi], kept=kept, why=why,
                         wins=sum(entry["per_task"][t] > r0["per_task"][t] for t in r0["per_task"]),
                         losses=sum(entry["per_task"][t] < r0["per_task"][t] for t in r0["per_task"]))
    r4, r5 = out["runs"]["R4"], out["runs"]["R5"]
    if "shots_score" in r4 and "shots_score" in r5:  # pooling: judged on the examples score against R4
        gap = r5["shots_score"] - r4["shots_score"]
        r5.update(kept=gap >= KEEP_GAIN, why=f"{gap:+.1f} with 3 examples against R4 (kept at >= +{KEEP_GAIN:.0f})")
    return out


def markdown(summary: dict) -> str:
    lines = ["# v2 recipe: short runs on the v2 validation tasks", "",
             "Made by `benchmarks/short_runs.py` from each run's `gen_val.jsonl`; the rule is "
             "[PLAN.md](PLAN.md)'s, written before these numbers. Scores: strict exact match or accuracy x100, mean "
             "over the 27 validation tasks (8 instances each) at the run's last step; copy rate: share of generation "
             "answers equal to their input. Interval: paired bootstrap over tasks of (run - R0), 95%.", ""]
    if "base" in summary:
        b = summary["base"]
        copy = "n/a" if b["copy_rate"] is None else f"{b['copy_rate']:.1f}%"
        lines += [f"Base model, no adapter: {b['score']:.1f}, copy rate {copy}.", ""]
    lines += ["| run | change | status | score | copy rate | vs R0 | 95% CI | better / worse tasks | kept "
              "| with 3 examples |", "|---|---|---|---:|---:|---:|---|---|---|---:|"]
    for name, e in summary["runs"].items():
        score = f"{e['score']:.1f}" if "score" in e else ""
        copy = f"{e['copy_rate']:.1f}%" if e.get("copy_rate") is not None else ""
        delta = f"{e['delta']:+.1f}" if "delta" in e else ""
        ci = f"[{e['interval'][0]:+.1f}, {e['interval'][1]:+.1f}]" if "interval" in e else ""
        wl = f"{e['wins']} / {e['losses']}" if "wins" in e else ""
        kept = ("yes" if e["kept"] else "no") + f" ({e['why']})" if "kept" in e else ("control" if name == "R0" else "")
        shots = f"{e['shots_score']:.1f}" if "shots_score" in e else ""
        lines.append(f"| {name} | {e['change']} | {e['status']} | {score} | {copy} | {delta} | {ci} | {wl} | {kept} "
                     f"| {shots} |")
    lines += ["", "Curves (score / copy rate by step):", ""]
    for name, e in summary["runs"].items():
        if e["curve"]:
            pts = ", ".join(f"{c['step']}: {c['score']:.1f}"
                            + (f" / {c['copy_rate']:.0f}%" if c["copy_rate"] is not None else "") for c in e["curve"])
            lines.append(f"- {name}: {pts}")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, e in summary["runs"].items():
        if not e["curve"]:
            continue
        steps = [c["step"] for c in e["curve"]]
        ax1.plot(steps, [c["score"] for c in e["curve"]], marker="o", label=name)
        if all(c["copy_rate"] is not None for c in e["curve"]):
            ax2.plot(steps, [c["copy_rate"] for c in e["curve"]], marker="o", label=name)
    if "base" in summary:
        ax1.axhline(summary["base"]["score"], color="grey", linestyle="--", label="base")
        if summary["base"]["copy_rate"] is not None:
            ax2.axhline(summary["base"]["copy_rate"], color="grey", linestyle="--", label="base")
    ax1.set(title="v2 validation score (strict EM / acc)", xlabel="step", ylabel="score x100")
    ax2.set(title="copy rate of generation answers", xlabel="step", ylabel="%")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="directory holding the run directories R0..R5")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "quality"
                        / "v2-recipe" / "short-runs")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        print(f"error: no run directory at {args.runs}", file=sys.stderr)
        return 2
    summary = summarise(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    slim = {**summary, "runs": {n: {k: v for k, v in e.items() if k != "dir"} for n, e in summary["runs"].items()}}
    (args.out / "short-runs.json").write_text(json.dumps(slim, indent=1, sort_keys=True) + "\n")
    text = markdown(summary)
    (args.out / "short-runs.md").write_text(text)
    plot(summary, args.out / "short-runs.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
