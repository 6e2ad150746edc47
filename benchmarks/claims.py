"""The quality benchmark's claims, checked against a report's ``results.json``.

    python benchmarks/claims.py runs/bench-quality-small/report     # writes claims.md there, prints it

Each claim is the comparison the paper makes (and issue 5 asks for), with the numbers on both sides and whether it
holds. Scores are the report's headline: strict exact match (short answers), ROUGE-L (long-form generation) or
length-normalised accuracy (multiple choice), x100, averaged over the tasks of a split (reports written before the
strict metric existed: ROUGE-L for every generation task). A report with the column ``t2l[train]`` (the v2 benchmark,
``quality.py --scale v2``) is checked against ``V2_CLAIMS``, the bar of the generalisation issue, or, when all its
tasks are seen ones (``--split seen``), against ``V2_SEEN_CLAIMS``: T2L and T2L-recon against the per-task LoRAs
("no regression on seen tasks"; a "ratio" claim's interval is that of ``left - 0.98 x right``). T2L columns are
named ``t2l-sft[group]`` (``t2l[group]`` in v2): ``train`` is the task's own description, ``heldout`` descriptions
never trained on, ``random`` random letters shaped like the description.

Each comparison of two columns also gets two paired bootstrap 95% intervals of its difference, from the per-instance
scores in the report's records (both columns scored the same instances): one resamples the instances of each task
(is the gap more than the noise of which instances were drawn?), the other resamples the tasks too (would it hold
on other tasks like these?). Neither covers training noise: a retrained checkpoint moves the scores as well. A
"clear margin" needs the first interval above zero. Multiple-choice records written before they carried
``per_instance_correct`` are completed from the task library named in the report (its answers, checked against
the record's accuracy).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: "Aligned beats random by a clear margin": at least this many points (x100) on the average of a split.
CLEAR_MARGIN = 2.0
#: "ratio>=0.98" claims: left must reach this share of right (the paper's T2L-recon and T2L-SFT on seen tasks).
RATIO = 0.98
#: Bootstrap resamples for the intervals, and their seed (fixed: the same report gives the same claims).
BOOTSTRAP, BOOTSTRAP_SEED = 4000, 0

#: ``{column: {task: per-instance scores}}`` (averaged over a task's descriptions); tasks without them are absent.
Instances = dict[str, dict[str, np.ndarray]]


@dataclass
class Claim:
    text: str
    left: str  #: column
    right: str  #: column
    split: str
    kind: str  #: ">=", ">", "ratio>=0.98", "margin", "gain" (left >= right + offset), "copy" (copy-rate bound)
    offset: float = 0.0  #: "gain": points left must be ahead by; "copy": points of copy rate left may be above
    interval: bool = False  #: "gain": the instance interval must also be above zero
    win_share: float | None = None  #: "gain": left must be better on at least this share of the tasks

    def check(self, avg: dict, per_task: dict, tasks: list[dict],
              instances: Instances | None = None) -> tuple[str, str]:
        left, right = _score(avg, self.left, self.split), _score(avg, self.right, self.split)
        if left is None or right is None:
            missing = self.left if left is None else self.right
            return "not measured", f"no `{missing}` scores on {self.split} tasks"
        figures = f"{self.left} {left:.1f} vs {self.right} {right:.1f}"
        if self.kind == "copy":
            a, b = (avg.get(c, {}).get(self.split, {}).get("copy_rate") for c in (self.left, self.right))
            if a is None or b is None:
                return "not measured", "no copy rates"
            return (_verdict(100 * a <= 100 * b + self.offset),
                    f"copy rate {self.left} {100 * a:.1f}% vs {self.right} {100 * b:.1f}% (allowed: + {self.offset:.0f})")
        names = [t["name"] for t in tasks if t["split"] == self.split]
        if self.kind == "ratio>=0.98":
            ratio = left / right if right else float("inf")
            interval = paired_intervals(instances or {}, self.left, self.right, names, scale=RATIO)
            ci = (f"; 95% CI of {self.left} - {RATIO:g} x {self.right}: [{interval[0]:+.1f}, {interval[1]:+.1f}] "
                  f"over instances, [{interval[2]:+.1f}, {interval[3]:+.1f}] over tasks and instances") if interval else ""
            return _verdict(ratio >= RATIO), f"{figures}: {100 * ratio:.1f}% (needs >= {100 * RATIO:.0f}%){ci}"
        interval = paired_intervals(instances or {}, self.left, self.right, names)
        ci = (f"; 95% CI [{interval[0]:+.1f}, {interval[1]:+.1f}] over instances, "
              f"[{interval[2]:+.1f}, {interval[3]:+.1f}] over tasks and instances") if interval else ""
        if self.kind == "margin":
            wins = sum(1 for n in names if _task(per_task, self.left, n) is not None
                       and _task(per_task, self.right, n) is not None
                       and _task(per_task, self.left, n) > _task(per_task, self.right, n))
            losses = sum(1 for n in names if _task(per_task, self.left, n) is not None
                         and _task(per_task, self.right, n) is not None
                         and _task(per_task, self.left, n) < _task(per_task, self.right, n))
            diff = left - right
            clear = interval is None or interval[0] > 0
            return (_verdict(diff >= CLEAR_MARGIN and wins > losses and clear),
                    f"{figures}: {diff:+.1f} points (needs >= +{CLEAR_MARGIN:.0f}"
                    f"{' and an instance interval above 0' if interval else ''}); better on {wins} tasks, "
                    f"worse on {losses}{ci}")
        if self.kind == "gain":
            pairs = [(_task(per_task, self.left, n), _task(per_task, self.right, n)) for n in names]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            wins = sum(a > b for a, b in pairs)
            needs = [f">= {self.offset:+.0f}"] + (["instance interval above 0"] if self.interval else [])
            holds = left - right >= self.offset and (not self.interval or (interval is not None and interval[0] > 0))
            if self.win_share is not None:
                needs.append(f"better on >= {self.win_share:.0%} of tasks")
                holds = holds and wins >= self.win_share * len(pairs)
            return (_verdict(holds), f"{figures}: {left - right:+.1f} (needs {', '.join(needs)}); better on {wins} "
                                     f"of {len(pairs)} tasks{ci}")
        holds = left >= right if self.kind == ">=" else left > right
        return _verdict(holds), f"{figures} ({left - right:+.1f}){ci}"


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


#: The v2 benchmark's bar (the generalisation issue's must-shows), for the method `t2l` on the unseen tasks.
V2_CLAIMS = [
    Claim("T2L (own description) >= multi-task LoRA + 3, interval above 0", "t2l[train]", "multitask-lora", "unseen",
          "gain", offset=3, interval=True),
    Claim("T2L (own description) >= 3-shot ICL", "t2l[train]", "icl3", "unseen", "gain"),
    Claim("T2L (own description) >= base + 10", "t2l[train]", "base", "unseen", "gain", offset=10),
    Claim("T2L (own description) >= base with the description in the prompt + 10", "t2l[train]", "desc-prompt",
          "unseen", "gain", offset=10),
    Claim("own description >= random strings + 5, interval above 0, better on 2/3 of tasks", "t2l[train]",
          "t2l[random]", "unseen", "gain", offset=5, interval=True, win_share=2 / 3),
    Claim("held-out descriptions within 3 points of the own description", "t2l[heldout]", "t2l[train]", "unseen",
          "gain", offset=-3),
    Claim("T2L's copy rate <= the description-in-prompt base model's + 5 points", "t2l[train]", "desc-prompt",
          "unseen", "copy", offset=5),
]


#: The v2 seen side's bar (``quality.py --scale v2 --split seen``, issue 16's "no regression on seen tasks"): the
#: T2L checkpoint and T2L-recon against each task's own LoRA, on seen tasks' held-out test instances.
V2_SEEN_CLAIMS = [
    Claim("seen: T2L (own description) >= the per-task LoRAs' average", "t2l[train]", "task-lora", "seen", "gain"),
    Claim("seen: T2L (own description) reaches >= 98% of the per-task LoRAs (the paper: ~98%)", "t2l[train]",
          "task-lora", "seen", "ratio>=0.98"),
    Claim("seen: T2L-recon reaches >= 98% of the per-task LoRAs", "t2l-recon[train]", "task-lora", "seen",
          "ratio>=0.98"),
    Claim("seen: T2L (own description) >= multi-task LoRA", "t2l[train]", "multitask-lora", "seen", "gain"),
]


#: Issue 15's bar, added to the v2 unseen claims when the report scored a checkpoint that reads examples
#: (``t2l+shots``: icl3's shots given to the hypernetwork, none of them in the prompt). "k = 0 within 1 point of the
#: description-only checkpoint" compares two checkpoints, so it is not a claim of one report.
V2_EXAMPLES_CLAIMS = [
    Claim("T2L with 3 examples >= 3-shot ICL + 3, interval above 0", "t2l+shots[train]", "icl3", "unseen", "gain",
          offset=3, interval=True),
    Claim("T2L with 3 examples >= T2L description-only + 3", "t2l+shots[train]", "t2l[train]", "unseen", "gain",
          offset=3),
    Claim("T2L uses the examples: real ones > the same with shuffled outputs, interval above 0", "t2l+shots[train]",
          "t2l+shuffled-shots[train]", "unseen", "gain", interval=True),
]


def claims_for(results: dict) -> list[Claim]:
    """The claims a report is checked against: the v2 seen side's, the v2 unseen benchmark's (both score the
    method ``t2l``; with ``t2l+shots`` also the examples issue's), or the quality benchmark's."""
    columns = results.get("columns", [])
    if "t2l[train]" not in columns:
        return CLAIMS
    splits = {t["split"] for t in results.get("tasks", [])}
    if splits == {"seen"}:
        return V2_SEEN_CLAIMS
    return V2_CLAIMS + V2_EXAMPLES_CLAIMS if "t2l+shots[train]" in columns else V2_CLAIMS


def _verdict(holds: bool) -> str:
    return "holds" if holds else "DOES NOT HOLD"


def _score(avg: dict, column: str, split: str) -> float | None:
    value = avg.get(column, {}).get(split, {}).get("score")
    return None if value is None else 100 * value


def _task(per_task: dict, column: str, task: str) -> float | None:
    value = per_task.get(column, {}).get(task, {}).get("score")
    return None if value is None else 100 * value


def paired_intervals(instances: Instances, left: str, right: str, names: list[str], scale: float = 1.0
                     ) -> tuple[float, float, float, float] | None:
    """95% bootstrap intervals (x100) of ``mean over tasks of (left - scale * right)``: instances resampled within
    each task, then tasks and instances. ``None`` unless both columns have paired per-instance scores on every task.
    (With ``scale`` 0.98 the interval is above zero when left reaches 98% of right beyond the noise.)"""
    diffs = []
    for name in names:
        a, b = instances.get(left, {}).get(name), instances.get(right, {}).get(name)
        if a is None or b is None or len(a) != len(b) or not len(a):
            return None
        diffs.append(a - scale * b)
    if not diffs:
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    # (tasks, resamples): each task's mean difference over a resample of its instances
    means = np.stack([d[rng.integers(0, len(d), (BOOTSTRAP, len(d)))].mean(1) for d in diffs])
    within = means.mean(0)
    picks = rng.integers(0, len(diffs), (BOOTSTRAP, len(diffs)))
    across = means[picks, np.arange(BOOTSTRAP)[:, None]].mean(1)
    lo, hi = np.percentile(within, [2.5, 97.5])
    lo2, hi2 = np.percentile(across, [2.5, 97.5])
    return 100 * lo, 100 * hi, 100 * lo2, 100 * hi2


def _library_answers(results: dict) -> Callable[[str, int], list[int] | None]:
    """``answers(task, n)``: the first ``n`` test answers of a library task (the instances the eval scored), from
    the library the report names (or the default one, as the eval used); ``None`` where it is not on this machine."""
    from text2lora.data.library import TaskLibrary, default_library_dir
    from text2lora.errors import Text2LoraError

    path = (results.get("config") or {}).get("library") or default_library_dir()
    library = TaskLibrary.load(path) if Path(path, "index.json").is_file() else None

    def answers(task: str, n: int) -> list[int] | None:
        if library is None:
            return None
        try:
            test = library.instances(task, "test")[:n]
        except Text2LoraError:  # a task the library does not have (a user task file): no answers
            return None
        return [inst.answer for inst in test] if len(test) == n else None

    return answers


def per_instance_scores(results: dict) -> Instances:
    """Per-instance scores of every column and task in a report's records (see :data:`Instances`)."""
    answers = None
    rows: dict[str, dict[str, list[list[float]]]] = {}
    for rec in results.get("records", []):
        scores = rec.get("scores") or {}
        values = (scores.get("per_instance_score") or scores.get("per_instance_rouge_l")
                  or scores.get("per_instance_correct"))
        if values is None and scores.get("choices") is not None:
            answers = answers or _library_answers(results)
            truth = answers(rec["task"], len(scores["choices"]))
            if truth is not None:
                values = [float(p == a) for p, a in zip(scores["choices"], truth)]
                if abs(sum(values) / max(1, len(values)) - scores.get("accuracy", -1)) > 1e-9:
                    values = None  # not the instances it scored: no interval rather than a wrong one
        if values is not None:
            rows.setdefault(rec["label"], {}).setdefault(rec["task"], []).append(values)
    out: Instances = {}
    for label, tasks in rows.items():
        for task, runs in tasks.items():
            if len({len(r) for r in runs}) == 1:
                out.setdefault(label, {})[task] = np.mean(np.array(runs, dtype=float), axis=0)
    return out


def check(report_dir: Path) -> str:
    results = json.loads((report_dir / "results.json").read_text())
    instances = per_instance_scores(results)
    lines = ["# Claims of the quality benchmark", "",
             f"Checked by `benchmarks/claims.py` against `{(report_dir / 'results.json').name}` "
             f"({results.get('created', '?')}). Scores x100; averages over the tasks of a split. Intervals: paired "
             f"bootstrap, 95%, {BOOTSTRAP} resamples; training noise not included.", "",
             "| claim | verdict | figures |", "|---|---|---|"]
    for claim in claims_for(results):
        verdict, figures = claim.check(results["averages"], results["per_task"], results["tasks"], instances)
        lines.append(f"| {claim.text} | {verdict} | {figures} |")
    tokens = results.get("prompt_tokens", {})
    if "icl3" in tokens and "t2l+shots[train]" in tokens:
        icl, t2l = tokens["icl3"]["mean"], tokens["t2l+shots[train]"]["mean"]
        lines += ["", f"Prompt tokens per request: `t2l+shots` {t2l:.1f} against `icl3` {icl:.1f}, "
                      f"{icl - t2l:.1f} fewer ({100 * (1 - t2l / icl):.0f}% of icl3's prompt saved)."]
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
