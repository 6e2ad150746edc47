"""benchmarks/short_runs.py: the v2 recipe's keep rule (docs/quality/v2-recipe/PLAN.md) applied to gen_val.jsonl rows,
with unfinished runs judged on nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripts import load_script

TASKS = [f"task{i}" for i in range(6)]


@pytest.fixture(scope="module")
def script():
    return load_script("benchmarks/short_runs.py")


def write_run(root: Path, name: str, steps: int, curve: list[tuple[int, list[float], float]],
              shots: list[float] | None = None) -> None:
    run = root / name
    run.mkdir(parents=True)
    (run / "ckpt-0000100").mkdir()
    (run / "ckpt-0000100" / "config.json").write_text(json.dumps({"loop": {"steps": steps}}))
    rows = []
    for step, scores, copy in curve:
        rows.append({"step": step, "model": "t2l", "score": sum(scores) / len(scores), "copy_rate": copy,
                     "tasks": {t: {"score": s} for t, s in zip(TASKS, scores)}})
        if shots is not None:
            rows.append({"step": step, "model": "t2l+shots", "score": sum(shots) / len(shots), "copy_rate": 0.0,
                         "tasks": {t: {"score": s} for t, s in zip(TASKS, shots)}})
    if name == "R0":
        rows.insert(0, {"step": 0, "model": "base", "score": 0.05, "copy_rate": 0.02, "tasks": {}})
    (run / "gen_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6')  # a cut line


def test_the_keep_rule_and_its_interval(script, tmp_path, capsys):
    r0 = [0.10, 0.20, 0.30, 0.40, 0.50, 0.60]
    write_run(tmp_path, "R0", 600, [(0, [0.0] * 6, 0.0), (600, r0, 0.30)])
    write_run(tmp_path, "R1", 600, [(600, [s + 0.02 for s in r0], 0.30)])  # +2 points: kept
    write_run(tmp_path, "R2", 600, [(600, [s + 0.005 for s in r0], 0.20)])  # +0.5, copy 10 points lower: kept
    write_run(tmp_path, "R3", 600, [(400, [s + 0.1 for s in r0], 0.0)])  # unfinished: judged on nothing
    write_run(tmp_path, "R4", 600, [(600, [s - 0.009 for s in r0], 0.30)], shots=[0.9] * 6)  # -0.9: kept (>= -1)
    assert script.main(["--runs", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "short-runs.json").read_text())
    runs = summary["runs"]
    assert runs["R1"]["kept"] and runs["R1"]["delta"] == pytest.approx(2.0)
    lo, hi = runs["R1"]["interval"]
    assert lo == pytest.approx(2.0) and hi == pytest.approx(2.0)  # every task +2: no spread
    assert runs["R1"]["wins"] == 6 and runs["R1"]["losses"] == 0
    assert runs["R2"]["kept"] and "copy rate 10.0 points lower" in runs["R2"]["why"]
    assert runs["R3"]["status"] == "unfinished (step 400)" and "kept" not in runs["R3"]
    assert runs["R4"]["kept"] and runs["R4"]["shots_score"] == pytest.approx(90.0)
    assert summary["base"]["score"] == pytest.approx(5.0)
    table = (tmp_path / "out" / "short-runs.md").read_text()
    assert "| R4 |" in table and "| 90.0 |" in table and (tmp_path / "out" / "short-runs.png").stat().st_size > 0
    assert "R1" in capsys.readouterr().out


def test_a_lever_that_does_not_help_is_dropped(script, tmp_path):
    r0 = [0.5] * 6
    write_run(tmp_path, "R0", 600, [(600, r0, 0.30)])
    write_run(tmp_path, "R1", 600, [(600, [0.505] * 6, 0.28)])  # +0.5, copy only 2 points lower
    write_run(tmp_path, "R4", 600, [(600, [0.48] * 6, 0.30)])  # -2: the examples cost description-only quality
    script.main(["--runs", str(tmp_path), "--out", str(tmp_path / "out")])
    runs = json.loads((tmp_path / "out" / "short-runs.json").read_text())["runs"]
    assert runs["R1"]["kept"] is False and runs["R4"]["kept"] is False
    assert runs["R2"]["status"] == "not run"


def test_a_missing_runs_directory_is_a_clear_error(script, tmp_path, capsys):
    assert script.main(["--runs", str(tmp_path / "nowhere")]) == 2
    assert "no run directory" in capsys.readouterr().err


def test_pooling_is_judged_on_the_examples_score_against_r4(script, tmp_path):
    r0 = [0.5] * 6
    write_run(tmp_path, "R0", 600, [(600, r0, 0.30)])
    write_run(tmp_path, "R4", 600, [(600, r0, 0.30)], shots=[0.60] * 6)
    write_run(tmp_path, "R5", 600, [(600, [0.1] * 6, 0.30)], shots=[0.62] * 6)  # +2 with examples: kept
    script.main(["--runs", str(tmp_path), "--out", str(tmp_path / "out")])
    runs = json.loads((tmp_path / "out" / "short-runs.json").read_text())["runs"]
    assert runs["R5"]["kept"] and "+2.0 with 3 examples against R4" in runs["R5"]["why"]
    assert "delta" not in runs["R5"]  # not compared with R0's description-only score
