"""Ship the long run's checkpoint, if and only if the ship rule said so: the steps `scripts/v2_finish.py` leaves to a
person, done the same way each time.

    python scripts/ship_checkpoint.py --checkpoint $TEXT2LORA_HOME/runs/sft-v2/best --dry-run
    python scripts/ship_checkpoint.py --checkpoint $TEXT2LORA_HOME/runs/sft-v2/best

What it checks before writing anything:

* ``--decision`` (``docs/quality/v2-recipe/ship-decision``) says ``ship``: the rule of PLAN.md, applied to the
  validation reports, chose the candidate. Otherwise nothing is shipped (exit status 1).
* ``--report`` (the committed test report, ``docs/quality/v2-recipe/final/test``) scored this very checkpoint as
  ``t2l``, so the model card's figures are this checkpoint's; ``--seen`` likewise, when given.
* The checkpoint loads, is trained, and its weights are at most 40 MB.

What it writes, into ``--dest`` (``src/text2lora/checkpoints/default``), in one atomic swap: the weights (bytes as
they are), ``t2l_config.json`` with provenance that names no local path, and a model card (``README.md``) made from
the reports: what it scores beside every baseline, the ship rule's figures, and every claim that does not hold.
Then ``src/text2lora/demo_task.json`` (what ``make demo`` runs): the unseen task where this checkpoint's adapter
most clearly does the task, chosen by the rule in :func:`pick_demo_task` (a task where echoing the input scores well
is never chosen) from the *validation* report (``--demo-from``; no choice is made on the test split), or
``--demo-task``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_demo_task  # noqa: E402
from v2_finish import DOCS, ROOT, scored  # noqa: E402  (the queue's own "this report scored that checkpoint")

DEST = ROOT / "src" / "text2lora" / "checkpoints" / "default"
MAX_BYTES = 40_000_000  #: issue 16: "safetensors, at most 40 MB"

#: how the model card names a report column; columns not listed keep their label
LABELS = {
    "base": "base model",
    "desc-prompt": "base model, description in the prompt",
    "icl3": "base model, 3-shot in-context learning",
    "multitask-lora": "multi-task LoRA (same seen tasks)",
    "lora": "per-task LoRA (oracle, seen tasks only)",
    "t2l-recon": "T2L-recon (per-task LoRA library)",
    "t2l[train]": "**this checkpoint, task's own description**",
    "t2l[heldout]": "this checkpoint, held-out descriptions",
    "t2l[random]": "this checkpoint, random strings",
    "t2l+shots[train]": "this checkpoint, own description + 3 examples (out of the prompt)",
    "t2l+shuffled-shots[train]": "this checkpoint, + the same examples with shuffled outputs",
}

#: the demo task rule: a generation task, the adapter right on at least half the instances, rarely an echo of the
#: input, and well ahead of the base model with and without the description in its prompt
DEMO_MIN_SCORE, DEMO_MAX_COPY, DEMO_MIN_GAIN = 0.5, 0.2, 0.2


class ShipError(Exception):
    pass


def _report_of(report: Path, checkpoint: Path) -> dict:
    """``report``'s results, which must have scored ``checkpoint`` as its T2L."""
    path = report / "results.json"
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise ShipError(f"no report at {report} (no results.json)") from None
    except ValueError as e:
        raise ShipError(f"{path} is not JSON: {e}") from None
    if not scored(results, checkpoint):
        raise ShipError(f"{report} did not score {checkpoint} as t2l: its figures are another checkpoint's")
    return results


def check_decision(decision_dir: Path) -> dict:
    path = decision_dir / "ship-decision.json"
    if not path.is_file():
        raise ShipError(f"no ship decision at {path}: run `python scripts/v2_finish.py` first")
    try:
        decision = json.loads(path.read_text())
    except ValueError as e:
        raise ShipError(f"{path} is not JSON: {e}") from None
    if not decision.get("ship"):
        failed = [r["rule"] for r in decision.get("rules", []) if r.get("verdict") != "holds"]
        raise ShipError("the ship rule said keep the shipped checkpoint (" + "; ".join(failed) + "): nothing shipped")
    return decision


def check_checkpoint(checkpoint: Path):
    from text2lora.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint
    from text2lora.errors import Text2LoraError

    weights = checkpoint / WEIGHTS_FILE
    if not weights.is_file() or not (checkpoint / CONFIG_FILE).is_file():
        raise ShipError(f"{checkpoint} is not a checkpoint (needs {WEIGHTS_FILE} and {CONFIG_FILE})")
    size = weights.stat().st_size
    if size > MAX_BYTES:
        raise ShipError(f"{weights} is {size / 1e6:.1f} MB; a shipped checkpoint may be at most {MAX_BYTES / 1e6:.0f} MB")
    try:
        net, meta = load_checkpoint(checkpoint)
    except Text2LoraError as e:
        raise ShipError(f"{checkpoint} does not load: {e}") from None
    if not meta.trained:
        raise ShipError(f"{checkpoint} is an untrained (fresh) checkpoint")
    return net, meta, size


def _avg(results: dict, column: str, split: str, key: str) -> float | None:
    value = results.get("averages", {}).get(column, {}).get(split, {}).get(key)
    return None if value is None else float(value)


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def pick_demo_task(results: dict, t2l: str = "t2l[train]") -> str:
    """The unseen generation task where the checkpoint's adapter most clearly does the task: score >=
    :data:`DEMO_MIN_SCORE`, copy rate <= :data:`DEMO_MAX_COPY`, ahead of the better of ``base`` and ``desc-prompt`` by
    >= :data:`DEMO_MIN_GAIN`; the largest gain wins (then the higher score, then the name)."""
    per_task = results.get("per_task", {})
    if t2l not in per_task:
        raise ShipError(f"the report has no {t2l} column to choose the demo task from")
    candidates = []
    for task in results.get("tasks", []):
        name = task["name"]
        if task.get("split") != "unseen" or task.get("metric") != "generation":
            continue
        own = per_task[t2l].get(name)
        if own is None:
            continue
        peers = [per_task[c][name]["score"] for c in ("base", "desc-prompt") if name in per_task.get(c, {})]
        if not peers:
            continue
        gain = own["score"] - max(peers)
        if own["score"] >= DEMO_MIN_SCORE and own.get("copy_rate", 1.0) <= DEMO_MAX_COPY and gain >= DEMO_MIN_GAIN:
            candidates.append((-gain, -own["score"], name))
    if not candidates:
        raise ShipError(
            f"no unseen generation task of the report has the adapter at >= {100 * DEMO_MIN_SCORE:.0f} with a copy "
            f"rate <= {100 * DEMO_MAX_COPY:.0f}% and >= {100 * DEMO_MIN_GAIN:.0f} points over the base model: "
            "`make demo` could not show it doing a task; name one with --demo-task if you have looked")
    return sorted(candidates)[0][2]


def failed_claims(claims_md: Path) -> list[str]:
    """The rows of a ``claims.md`` whose verdict is not "holds", as "claim: figures"."""
    if not claims_md.is_file():
        return []
    rows = []
    for line in claims_md.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1] not in ("verdict", "---", "holds") and not set(cells[1]) <= {"-"}:
            rows.append(f"{cells[0]} ({cells[1].lower()}): {cells[2]}")
    return rows


def model_card(meta, size: int, n_params: int, decision: dict, test: dict, seen: dict | None,
               test_dir: Path, seen_dir: Path | None, demo_task: str) -> str:
    hp = meta.hypernet
    tasks = meta.info.get("tasks", [])
    examples = (f" and, with `--examples`, up to {hp.examples.max_examples} worked examples ({hp.examples.pooling} "
                "pooling)" if hp.examples else "")
    lines = [
        "# The shipped text2lora checkpoint", "",
        f"A T2L-{hp.variant} hypernetwork ({n_params / 1e6:.2f}M parameters, fp32 safetensors, {size / 1e6:.1f} MB) "
        f"for **SmolLM2-135M-Instruct** (`{meta.base_model}`), reading descriptions with **all-MiniLM-L6-v2** "
        f"(`{meta.encoder.name}`){examples}. It writes rank-{hp.lora.rank} "
        f"{'rsLoRA' if hp.lora.use_rslora else 'LoRA'} adapters (alpha {hp.lora.alpha:g}) for "
        f"{', '.join('`' + t.name + '`' for t in meta.layout.targets)} of all {meta.layout.n_layers} layers"
        + (", on top of the multi-task LoRA it starts from (the offset)." if hp.offset else "."), "",
        f"**How it was trained.** {meta.info.get('run', 'T2L-SFT')}. {len(tasks)} seen tasks of task library v2 "
        "(the list is `info.tasks` in `t2l_config.json`). Records: `docs/quality/v2-recipe/long-run/`; the plan and "
        "its rules, written before the numbers: `docs/quality/v2-recipe/PLAN.md`.", "",
        "**Why this one.** The ship rule of PLAN.md, on the v2 validation tasks "
        "(`docs/quality/v2-recipe/ship-decision/`):", "",
        "| rule | verdict | figures |", "|---|---|---|",
        *[f"| {r['rule']} | {r['verdict']} | {r['figures']} |" for r in decision["rules"]], "",
        f"**What it scores** (`{test_dir.relative_to(ROOT) if test_dir.is_relative_to(ROOT) else test_dir}`"
        + (f", `{seen_dir.relative_to(ROOT) if seen_dir.is_relative_to(ROOT) else seen_dir}`" if seen_dir else "")
        + "; strict exact match or accuracy x100, averaged over tasks; the copy rate is the share of answers that "
        "repeat the input):", "",
    ]
    header = "| | unseen test tasks | copy rate |" + (" seen tasks |" if seen else "")
    lines += [header, "|---|---:|---:|" + ("---:|" if seen else "")]
    columns = list(dict.fromkeys([*test.get("columns", []), *(seen.get("columns", []) if seen else [])]))
    for col in columns:
        row = f"| {LABELS.get(col, col)} | {_fmt(_avg(test, col, 'unseen', 'score'))} | " \
              f"{_fmt(_avg(test, col, 'unseen', 'copy_rate'))} |"
        if seen:
            row += f" {_fmt(_avg(seen, col, 'seen', 'score'))} |"
        lines.append(row)
    limits = failed_claims(test_dir / "claims.md") + (failed_claims(seen_dir / "claims.md") if seen_dir else [])
    lines += ["", "**Limits.** " + ("Claims of issues 15 and 16 that do not hold on these reports (their `claims.md`):"
                                    if limits else "Every claim of issues 15 and 16 holds on these reports.")]
    lines += [f"- {c}" for c in limits]
    lines += ["", f"`make demo` runs it on `{demo_task}`, an unseen task chosen on the validation report by "
              "`scripts/ship_checkpoint.py`'s rule (the adapter right on at least half the instances, rarely echoing "
              "the input, well ahead of the base model).", "",
              "License: the weights are ours (the project's license). The training tasks are BIG-bench and Natural "
              "Instructions v1 (Apache-2.0) and the openai/evals registry (MIT); `text2lora data show TASK` gives "
              "each task's."]
    return "\n".join(lines) + "\n"


def ship(args: argparse.Namespace) -> int:
    from text2lora.checkpoint import CONFIG_FILE, WEIGHTS_FILE
    from text2lora.errors import Text2LoraError
    from text2lora.paths import atomic_dir, write_json

    decision = check_decision(args.decision)
    net, meta, size = check_checkpoint(args.checkpoint)
    test = _report_of(args.report, args.checkpoint)
    seen = _report_of(args.seen, args.checkpoint) if args.seen else None
    demo_task = args.demo_task or pick_demo_task(_report_of(args.demo_from, args.checkpoint))
    try:
        demo = make_demo_task.build(demo_task, n=args.demo_n, library=args.library)
    except (ValueError, Text2LoraError) as e:  # a seen or unknown task, no library
        raise ShipError(f"demo task: {e}") from None
    n_params = sum(p.numel() for p in net.state_dict().values())
    info = {k: v for k, v in meta.info.items() if k != "init_lora"}  # a local path means nothing elsewhere
    if "init_lora" in meta.info:
        info["init_lora"] = "the multi-task LoRA of the v2 baseline (benchmarks/quality.py --scale v2)"
    info["run"] = args.run
    info["chosen_by"] = "docs/quality/v2-recipe/ship-decision/ship-decision.md"
    meta.info = info
    card = model_card(meta, size, n_params, decision, test, seen, args.report, args.seen, demo_task)
    print(card)
    print(f"demo task: {demo_task}")
    if args.dry_run:
        print(f"(dry run: nothing written; would replace {args.dest} and {args.demo_out})")
        return 0
    with atomic_dir(args.dest) as tmp:
        shutil.copyfile(args.checkpoint / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
        write_json(tmp / CONFIG_FILE, meta.to_dict())
        (tmp / "README.md").write_text(card)
    make_demo_task.write(demo, args.demo_out)
    print(f"shipped {args.checkpoint} into {args.dest}; check `git diff --stat`, run `make demo`, then commit")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--checkpoint", type=Path, required=True, help="the long run's best/ (the candidate)")
    parser.add_argument("--decision", type=Path, default=DOCS / "ship-decision", help="where ship-decision.json is")
    parser.add_argument("--report", type=Path, default=DOCS / "final" / "test", help="the test report (results.json)")
    parser.add_argument("--seen", type=Path, default=None, help="the seen report, for the card's seen column")
    parser.add_argument("--dest", type=Path, default=DEST, help="the shipped checkpoint's directory")
    parser.add_argument("--run", default="T2L-SFT, configs/smollm2-sft-v2.yaml: 8,000 steps x 8 examples, the "
                        "checkpoint of the best validation generation score",
                        help="one sentence on how it was trained (the card's and info.run)")
    parser.add_argument("--demo-from", type=Path, default=DOCS / "final" / "validation",
                        help="the validation report the demo task is chosen from")
    parser.add_argument("--demo-task", default=None, help="the demo task, instead of the rule's choice")
    parser.add_argument("--demo-n", type=int, default=6, help="instances in the demo task file")
    parser.add_argument("--demo-out", type=Path, default=make_demo_task.OUT, help=argparse.SUPPRESS)
    parser.add_argument("--library", default=None, help="the task library (default: $TEXT2LORA_HOME/library)")
    parser.add_argument("--dry-run", action="store_true", help="check and print the card; write nothing")
    args = parser.parse_args(argv)
    try:
        return ship(args)
    except ShipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
