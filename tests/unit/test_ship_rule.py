"""benchmarks/ship_rule.py: issue 16's ship rule on two validation reports (candidate and shipped checkpoint):
every rule must hold, the shipped column is paired with the candidate's, and unusable reports are refused."""

from __future__ import annotations

import json
from pathlib import Path

from tests.scripts import load_script

N_TASKS, N = 6, 20


def _report(path: Path, shares: dict[str, float], copy: dict[str, float] | None = None,
            tasks: list[str] | None = None) -> Path:
    """A validation report whose columns score ``shares`` on every task (per instance: that share of 1s)."""
    names = tasks or [f"v{i}" for i in range(N_TASKS)]
    records, per_task, avg = [], {}, {}
    for label, share in shares.items():
        k = round(share * N)
        for name in names:
            records.append({"label": label, "task": name, "scores": {"per_instance_score": [1.0] * k + [0.0] * (N - k)}})
            per_task.setdefault(label, {})[name] = {"score": k / N}
        avg[label] = {"unseen": {"score": k / N, "copy_rate": (copy or {}).get(label, 0.0)}}
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({
        "created": "2026-12-03", "columns": list(shares), "averages": avg, "per_task": per_task, "records": records,
        "tasks": [{"name": n, "split": "unseen"} for n in names]}))
    return path


def _run(tmp_path: Path, candidate: dict, shipped: float, copy: dict | None = None) -> tuple[int, dict]:
    ship_rule = load_script("benchmarks/ship_rule.py")
    cand = _report(tmp_path / "cand", {"desc-prompt": 0.05, "multitask-lora": 0.20, **candidate}, copy)
    old = _report(tmp_path / "old", {"t2l[train]": shipped})
    rc = ship_rule.main(["--candidate", str(cand), "--shipped", str(old), "--out", str(tmp_path / "out")])
    return rc, json.loads((tmp_path / "out" / "ship-decision.json").read_text())


def test_ships_only_when_every_rule_holds(tmp_path):
    rc, decision = _run(tmp_path / "a", {"t2l[train]": 0.30}, shipped=0.15)
    assert rc == 0 and decision["ship"] is True
    assert [r["verdict"] for r in decision["rules"]] == ["holds"] * 3
    assert "t2l[train] 30.0 vs shipped[train] 15.0: +15.0" in decision["rules"][1]["figures"]
    assert "Decision: ship the candidate" in (tmp_path / "a" / "out" / "ship-decision.md").read_text()

    # level with the shipped checkpoint: rule 2 fails, so nothing ships however good the rest is
    rc, decision = _run(tmp_path / "b", {"t2l[train]": 0.30}, shipped=0.30)
    assert decision["ship"] is False and [r["verdict"] for r in decision["rules"]] == ["holds", "DOES NOT HOLD", "holds"]
    # level with the multi-task LoRA: rule 1 fails
    _, decision = _run(tmp_path / "c", {"t2l[train]": 0.20}, shipped=0.0)
    assert decision["ship"] is False and decision["rules"][0]["verdict"] == "DOES NOT HOLD"
    # echoing: a copy rate 10 points over desc-prompt's fails rule 3
    _, decision = _run(tmp_path / "d", {"t2l[train]": 0.30}, shipped=0.0, copy={"t2l[train]": 0.15})
    assert decision["ship"] is False and decision["rules"][2]["verdict"] == "DOES NOT HOLD"


def test_unusable_reports_are_refused(tmp_path, capsys):
    ship_rule = load_script("benchmarks/ship_rule.py")
    cand = _report(tmp_path / "cand", {"desc-prompt": 0.0, "multitask-lora": 0.2, "t2l[train]": 0.3})
    other = _report(tmp_path / "other", {"t2l[train]": 0.1}, tasks=["x", "y"])
    no_lora = _report(tmp_path / "nolora", {"t2l[train]": 0.3})
    out = tmp_path / "out"
    assert ship_rule.main(["--candidate", str(cand), "--shipped", str(other), "--out", str(out)]) == 2
    assert "different tasks" in capsys.readouterr().err
    assert ship_rule.main(["--candidate", str(no_lora), "--shipped", str(cand), "--out", str(out)]) == 2
    assert "lacks multitask-lora, desc-prompt" in capsys.readouterr().err
    assert ship_rule.main(["--candidate", str(tmp_path), "--shipped", str(cand), "--out", str(out)]) == 2
    assert "no results.json" in capsys.readouterr().err
    assert not out.exists()
