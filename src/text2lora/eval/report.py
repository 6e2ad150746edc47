"""Reports of an :class:`~text2lora.eval.runner.EvalResult`: ``results.json`` (every score, the config, seed,
timing), ``results.md`` (averages over seen and unseen tasks, then one row per task) and ``results.png`` (bars
of the averages).

A task's score is its headline metric (x100 in the tables): case-sensitive exact match for short-answer generation
tasks (every reference at most 5 words), ROUGE-L for long-form ones, length-normalised accuracy for multiple choice;
averaged over the descriptions a unit was scored with. A method's average over a split is the mean over the tasks it
has a score for (the table says how many when that is fewer than all). Every generation score also carries its copy
rate: the share of outputs that repeat the input, whitespace aside.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path
from typing import Any

from text2lora.paths import atomic_write_text, write_json

log = logging.getLogger(__name__)

SPLITS = ("seen", "unseen", "user")
_KEYS = ("score", "strict_exact_match", "rouge_l", "exact_match", "accuracy", "copy_rate")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def per_task(result) -> dict[str, dict[str, dict[str, Any]]]:
    """``{label: {task: {score, rouge_l | accuracy, exact_match, n_descriptions}}}``."""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rec in result.records:
        grouped.setdefault(rec["label"], {}).setdefault(rec["task"], []).append(rec["scores"])
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for label, tasks in grouped.items():
        for task, scores in tasks.items():
            row = {k: _mean([s[k] for s in scores if k in s]) for k in _KEYS}
            out.setdefault(label, {})[task] = {**{k: v for k, v in row.items() if v is not None},
                                               "n_descriptions": len(scores)}
    return out


def averages(result, table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{label: {split: {score, rouge_l, exact_match, accuracy, n_tasks, of}}}`` over the tasks of each split."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for label in result.columns:
        for split in SPLITS:
            names = [t["name"] for t in result.tasks if t["split"] == split]
            if not names:
                continue
            rows = [table.get(label, {}).get(n) for n in names]
            rows = [r for r in rows if r is not None]
            entry: dict[str, Any] = {"n_tasks": len(rows), "of": len(names)}
            for k in _KEYS:
                value = _mean([r[k] for r in rows if k in r])
                if value is not None:
                    entry[k] = value
            out.setdefault(label, {})[split] = entry
    return out


def _cell(value: float | None, n: int | None = None, of: int | None = None) -> str:
    if value is None:
        return "–"
    text = f"{100 * value:.1f}"
    return f"{text} ({n}/{of})" if n is not None and of is not None and n < of else text


_METRIC_NAMES = {"multiple_choice": "MC", "accuracy": "MC", "generation": "gen", "rouge_l": "ROUGE-L",
                 "strict_exact_match": "EM"}


def _task_cell(entry: dict[str, Any]) -> str:
    cell = _cell(entry.get("score"))
    copy = entry.get("copy_rate")
    return f"{cell} ({100 * copy:.0f}% copy)" if copy else cell


def markdown(result, table, avg) -> str:
    cfg = result.config
    settings = cfg["settings"]
    splits = [s for s in SPLITS if any(t["split"] == s for t in result.tasks)]
    lines = [
        "# text2lora evaluation", "",
        f"Base model `{settings['base_model']}`; up to {settings['max_instances']} test instances per task; greedy "
        f"decoding, at most {settings['max_new_tokens']} new tokens; seed {settings['seed']}. Score: case-sensitive "
        "exact match (short-answer generation tasks: every reference at most 5 words), ROUGE-L (long-form "
        "generation) or length-normalised option log-likelihood accuracy (multiple choice), x100. Copy: the share "
        "of generated outputs equal to their input (whitespace aside), x100.", "",
        "## Averages", "",
    ]
    head = ["method"] + [f"{s} ({sum(t['split'] == s for t in result.tasks)} tasks)" for s in splits]
    for s in splits:
        head += [f"{s} strict EM", f"{s} ROUGE-L", f"{s} EM", f"{s} acc", f"{s} copy"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in result.columns:
        row = [label]
        for s in splits:
            e = avg.get(label, {}).get(s, {})
            row.append(_cell(e.get("score"), e.get("n_tasks"), e.get("of")))
        for s in splits:
            e = avg.get(label, {}).get(s, {})
            row += [_cell(e.get(k)) for k in ("strict_exact_match", "rouge_l", "exact_match", "accuracy", "copy_rate")]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Per task", "", "Score, with the copy rate in brackets where a method repeats any input.", "",
              "| task | split | metric | " + " | ".join(result.columns) + " |",
              "|" + "---|" * (3 + len(result.columns))]
    for t in result.tasks:
        cells = [_task_cell(table.get(label, {}).get(t["name"], {})) for label in result.columns]
        metric = _METRIC_NAMES.get(t.get("headline") or t["metric"], t["metric"])
        lines.append(f"| {t['name']} | {t['split']} | {metric} | " + " | ".join(cells) + " |")
    if result.skipped:
        lines += ["", "## Skipped", ""] + [f"- {s['method']} on {s['task']}: {s['reason']}" for s in result.skipped]
    if result.prompt_tokens:
        lines += ["", "## Prompt length", "", "Mean prompt tokens per request (chat template included; an adapter's "
                  "worked examples are not in the prompt, `icl3`'s shots are).", "", "| method | tokens | requests |",
                  "|---|---:|---:|"]
        lines += [f"| {label} | {p['mean']:.1f} | {p['requests']} |" for label, p in result.prompt_tokens.items()]
    timing = result.timing
    lines += ["", "## Timing", "", f"Total {timing.get('total_s', 0):.1f} s (model load {timing.get('model_load_s', 0):.1f} s); "
              f"cache hits {timing.get('cache', {}).get('hits', 0)}, scored {timing.get('cache', {}).get('misses', 0)}.", ""]
    lines += [f"- {name}: {m['seconds']:.1f} s, {m['scored']} of {m['units']} units scored"
              for name, m in timing.get("methods", {}).items()]
    return "\n".join(lines) + "\n"


def bar_chart(result, avg, path: Path) -> bool:
    """Bars of each method's average per split; False (no file) without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        log.warning("no PNG chart: matplotlib is not installed (pip install 'text2lora[eval]')")
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in SPLITS if any(t["split"] == s for t in result.tasks)]
    labels = result.columns
    width = 0.8 / max(1, len(splits))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 4.2))
    for k, split in enumerate(splits):
        scores = [avg.get(lb, {}).get(split, {}).get("score") for lb in labels]
        present = [i for i, v in enumerate(scores) if v is not None]  # no bar where a method has no score
        xs = [i + (k - (len(splits) - 1) / 2) * width for i in present]
        bars = ax.bar(xs, [100 * scores[i] for i in present], width, label=f"{split} tasks", color=f"C{k}")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
        copies = [avg.get(labels[i], {}).get(split, {}).get("copy_rate") for i in present]
        if any(c is not None for c in copies):  # the share of answers that repeat the input, under each bar
            ax.bar_label(bars, labels=["" if c is None else f"copy {100 * c:.0f}%" for c in copies],
                         label_type="center", fontsize=6, color="white")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("score (strict EM / ROUGE-L / accuracy, x100)")
    ax.set_title(f"text2lora evaluation: {result.config['settings']['base_model']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(result, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write results.json, results.md and results.png into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = per_task(result)
    avg = averages(result, table)
    paths = {"json": out / "results.json", "markdown": out / "results.md", "png": out / "results.png"}
    write_json(paths["json"], {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": result.config["settings"]["seed"], "config": result.config, "methods": result.methods,
        "tasks": result.tasks, "columns": result.columns, "averages": avg, "per_task": table,
        "records": result.records, "skipped": result.skipped, "timing": result.timing,
        "environment": result.environment, "prompt_tokens": result.prompt_tokens,
    })
    atomic_write_text(paths["markdown"], markdown(result, table, avg))
    if not bar_chart(result, avg, paths["png"]):
        del paths["png"]
    return paths


def summary_lines(result) -> list[str]:
    """The averages as a few console lines."""
    table = per_task(result)
    avg = averages(result, table)
    width = max(len(c) for c in result.columns) if result.columns else 10
    out = []
    for label in result.columns:
        parts = [f"{s} {_cell(e.get('score'), e.get('n_tasks'), e.get('of'))}" for s, e in avg.get(label, {}).items()]
        out.append(f"  {label:<{width}}  " + "   ".join(parts))
    return out
