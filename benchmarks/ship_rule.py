"""Issue 16's ship rule (docs/quality/v2-recipe/PLAN.md, written before the long run's numbers), applied to two
validation reports of the v2 benchmark:

    python benchmarks/ship_rule.py --candidate $W/report-validation --shipped SHIPPED_VALIDATION_REPORT \
        --out docs/quality/v2-recipe/ship-decision

``--candidate``: `quality.py --scale v2 --split validation --t2l-checkpoint <long run>/best`, which scores the
candidate as ``t2l`` beside ``multitask-lora`` and ``desc-prompt``. ``--shipped``: a report of the same tasks and
instances that scored the shipped checkpoint as ``t2l`` (`quality.py --scale v2 --split validation` without
``--t2l-checkpoint``, in another work dir, or ``--methods t2l``). The candidate replaces the shipped checkpoint only
if all three rules hold:

1. ``t2l[train]`` >= ``multitask-lora`` + 1 point, the paired 95% interval (over instances) above 0;
2. ``t2l[train]`` >= the shipped checkpoint's ``t2l[train]`` + 2 points;
3. ``t2l[train]``'s copy rate <= ``desc-prompt``'s + 5 points.

Writes ``ship-decision.md`` and ``ship-decision.json`` into ``--out`` and prints the Markdown; exit status 0 either
way (the decision is in the files), 2 for unusable reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import claims  # noqa: E402

SPLIT = "unseen"  #: the v2 validation tasks are unseen tasks
OWN = "t2l[train]"
SHIPPED = "shipped[train]"  #: the shipped checkpoint's own-description column, moved into the candidate's report
RULES = [
    claims.Claim("1. T2L (own description) >= multi-task LoRA + 1, interval above 0", OWN, "multitask-lora", SPLIT,
                 "gain", offset=1, interval=True),
    claims.Claim("2. T2L (own description) >= the shipped checkpoint + 2", OWN, SHIPPED, SPLIT, "gain", offset=2),
    claims.Claim("3. T2L's copy rate <= desc-prompt's + 5 points", OWN, "desc-prompt", SPLIT, "copy", offset=5),
]


class ReportError(ValueError):
    pass


def _load(report: Path) -> dict:
    path = report / "results.json"
    if not path.is_file():
        raise ReportError(f"no results.json in {report}")
    return json.loads(path.read_text())


def merge(candidate: dict, shipped: dict) -> dict:
    """The candidate's report with the shipped checkpoint's ``t2l[train]`` added as :data:`SHIPPED`; both must have
    scored the same tasks, so the comparison is paired."""
    for name, results in (("candidate", candidate), ("shipped", shipped)):
        if OWN not in results.get("columns", []):
            raise ReportError(f"the {name} report has no {OWN} column")
    missing = [c for c in ("multitask-lora", "desc-prompt") if c not in candidate["columns"]]
    if missing:
        raise ReportError(f"the candidate report lacks {', '.join(missing)}")
    tasks = sorted(t["name"] for t in candidate["tasks"])
    if tasks != sorted(t["name"] for t in shipped["tasks"]):
        raise ReportError("the two reports scored different tasks")
    merged = {**candidate, "columns": [*candidate["columns"], SHIPPED],
              "averages": {**candidate["averages"], SHIPPED: shipped["averages"][OWN]},
              "per_task": {**candidate["per_task"], SHIPPED: shipped["per_task"][OWN]},
              "records": [*candidate["records"],
                          *({**r, "label": SHIPPED} for r in shipped["records"] if r["label"] == OWN)]}
    return merged


def decide(candidate: dict, shipped: dict) -> dict:
    merged = merge(candidate, shipped)
    instances = claims.per_instance_scores(merged)
    rows = []
    for rule in RULES:
        verdict, figures = rule.check(merged["averages"], merged["per_task"], merged["tasks"], instances)
        rows.append({"rule": rule.text, "verdict": verdict, "figures": figures})
    ship = all(r["verdict"] == "holds" for r in rows)
    return {"ship": ship, "rules": rows, "candidate_created": candidate.get("created"),
            "shipped_created": shipped.get("created"), "tasks": len(candidate["tasks"])}


def markdown(decision: dict, candidate: Path, shipped: Path) -> str:
    lines = ["# Ship decision (issue 16)", "",
             f"The rule of `docs/quality/v2-recipe/PLAN.md`, applied by `benchmarks/ship_rule.py` to the validation "
             f"reports `{candidate}` (candidate) and `{shipped}` (shipped checkpoint), {decision['tasks']} tasks. "
             f"Scores x100; intervals: paired bootstrap, 95%.", "",
             "| rule | verdict | figures |", "|---|---|---|"]
    lines += [f"| {r['rule']} | {r['verdict']} | {r['figures']} |" for r in decision["rules"]]
    lines += ["", f"**Decision: {'ship the candidate' if decision['ship'] else 'keep the shipped checkpoint'}.**"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidate", type=Path, required=True, help="validation report scoring the candidate as t2l")
    parser.add_argument("--shipped", type=Path, required=True, help="validation report scoring the shipped t2l")
    parser.add_argument("--out", type=Path, required=True, help="where ship-decision.md/.json go")
    args = parser.parse_args(argv)
    try:
        decision = decide(_load(args.candidate), _load(args.shipped))
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ship-decision.json").write_text(json.dumps(decision, indent=2) + "\n")
    text = markdown(decision, args.candidate, args.shipped)
    (args.out / "ship-decision.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
