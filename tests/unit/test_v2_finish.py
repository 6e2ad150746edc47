"""scripts/v2_finish.py: after the long run, the figures of issues 15 and 16 in PLAN.md's order (validation, the
ship decision, then test and seen, claims, publish), each step skipped once done for *this* checkpoint, and a
refusal to start before the long run and the side queue have finished."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.scripts import load_script


@pytest.fixture()
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT2LORA_HOME", str(tmp_path / "home"))
    script = load_script("scripts/v2_finish.py")
    monkeypatch.setattr(script, "DOCS", tmp_path / "docs")
    runs = tmp_path / "home" / "runs"
    (runs / "sft-v2" / "best").mkdir(parents=True)
    return script, runs


#: Every baseline any side scores (quality.py's method names); a full report has them beside T2L.
BASELINES = ("base", "desc-prompt", "icl3", "multitask-lora", "task-lora", "t2l-recon")


def _report(report: Path, t2l: Path | None, baselines=BASELINES) -> None:
    report.mkdir(parents=True, exist_ok=True)
    methods = [{"name": b} for b in baselines] + ([{"name": "t2l", "kind": "t2l", "path": str(t2l)}] if t2l else [])
    (report / "results.json").write_text(json.dumps({"methods": methods}))
    (report / "results.md").write_text(f"# {report.name}\n")


def _ready(runs: Path) -> None:
    (runs / "sft-v2" / "summary.json").write_text("{}")
    _report(runs / "bench-quality-v2-shipped" / "report-validation", Path("/shipped"))
    for split in ("validation", "test", "seen"):  # the side queue's: baselines only
        _report(runs / "bench-quality-v2-final" / f"report-{split}", None)


def test_refuses_to_start_until_the_long_run_and_the_side_queue_are_done(world, monkeypatch, capsys):
    script, runs = world
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("nothing may run"))
    assert script.main([]) == 2
    err = capsys.readouterr().err
    assert "long run has not finished" in err and "shipped checkpoint's validation report" in err
    assert script.main(["--dry-run"]) == 0  # shows what waits, runs nothing
    assert "[wait]" in capsys.readouterr().out


def test_steps_run_in_plan_order_and_a_rerun_runs_nothing(world, monkeypatch, capsys):
    script, runs = world
    _ready(runs)
    best = runs / "sft-v2" / "best"
    final = runs / "bench-quality-v2-final"
    calls = []

    def fake_call(command, cwd, env):
        calls.append(command)
        assert env["OMP_NUM_THREADS"] == "2"
        if command[1].endswith("quality.py"):
            assert command[command.index("--multitask-steps") + 1] == "8000"
            assert command[command.index("--work") + 1] == str(final)
            assert Path(command[command.index("--t2l-checkpoint") + 1]) == best
            _report(final / f"report-{command[command.index('--split') + 1]}", best)
        elif command[1].endswith("ship_rule.py"):
            out = Path(command[command.index("--out") + 1])
            out.mkdir(parents=True)
            (out / "ship-decision.json").write_text(json.dumps({"ship": False}))
        else:  # claims.py REPORT
            (Path(command[2]) / "claims.md").write_text("claims\n")
        return 0

    monkeypatch.setattr(subprocess, "call", fake_call)
    assert script.main([]) == 0
    kinds = [(Path(c[1]).name, c[c.index("--split") + 1] if "--split" in c else None) for c in calls]
    assert kinds == [("quality.py", "validation"), ("ship_rule.py", None), ("quality.py", "test"),
                     ("quality.py", "seen"), ("claims.py", None), ("claims.py", None), ("claims.py", None)]
    docs = script.DOCS / "final"
    for split in ("validation", "test", "seen"):
        assert (docs / split / "claims.md").read_text() == "claims\n"
        assert json.loads((docs / split / "results.json").read_text())["methods"][-1]["path"] == str(best)
    assert "keep the shipped checkpoint" in capsys.readouterr().out

    calls.clear()
    assert script.main([]) == 0 and calls == []

    # a new report (rescored) makes its claims stale: only they, and their publication, run again
    later = time.time() + 5
    os.utime(final / "report-test" / "results.json", (later, later))
    (final / "report-test" / "results.md").write_text("# rescored\n")
    assert script.main([]) == 0
    assert calls == [[calls[0][0], str(script.CLAIMS), str(final / "report-test")]]
    assert (docs / "test" / "results.md").read_text() == "# rescored\n"


def test_waits_for_the_side_queue_to_score_every_sides_baselines(world, monkeypatch, capsys):
    script, runs = world
    _ready(runs)
    _report(runs / "bench-quality-v2-final" / "report-seen", None, ("base", "multitask-lora"))  # still scoring
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("nothing may run"))
    assert script.main([]) == 2
    err = capsys.readouterr().err
    assert "final baselines' seen scores" in err and "validation scores" not in err and "test scores" not in err


def test_a_report_of_another_checkpoint_is_not_the_candidates(world):
    script, runs = world
    _ready(runs)
    _report(runs / "bench-quality-v2-final" / "report-test", Path("/somewhere/else"))
    steps = {s.name: s.done for s in script.plan(runs.parent, 2)}
    assert not steps["candidate-validation"] and not steps["test"] and not steps["ship-decision"]
