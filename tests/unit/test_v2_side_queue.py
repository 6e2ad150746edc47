"""scripts/v2_side_queue.py: the second core's queue runs its steps in order, skips what is done, copies the work
dir once (never touching the shared one's multi-task LoRA), stops at a failing step, and refuses to start without
the v2 multi-task LoRA."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.scripts import load_script


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT2LORA_HOME", str(tmp_path))
    shared = tmp_path / "runs" / "bench-quality-v2"
    (shared / "lora-library" / "_multitask").mkdir(parents=True)
    (shared / "lora-library" / "_multitask" / "adapter_config.json").write_text("{}")
    (shared / "seen-tasks.json").write_text(json.dumps({"eval": ["a", "b"]}))
    return tmp_path


def _done(work: Path, stage: str) -> None:
    (work / "stages").mkdir(parents=True, exist_ok=True)
    (work / "stages" / f"{stage.replace(':', '_')}.json").write_text(json.dumps({"status": "done"}))


def _multitask_trained(final: Path, steps: int) -> None:
    """The final work dir's multi-task LoRA stage, done with a config of ``steps`` steps."""
    (final / "configs").mkdir(parents=True, exist_ok=True)
    (final / "configs" / "lora-multitask.yaml").write_text(yaml.safe_dump({"loop": {"steps": steps}}))
    _done(final, "lora:_multitask")


def test_steps_run_in_order_and_done_ones_are_skipped(home, monkeypatch, capsys):
    script = load_script("scripts/v2_side_queue.py")
    shared = home / "runs" / "bench-quality-v2"
    _done(shared, "lora:a")  # one seen LoRA of two: the step is still to do
    calls = []

    def fake_call(command, cwd, env):
        calls.append(command)
        assert env["OMP_NUM_THREADS"] == "1"
        if command[-2:] == ["--only", "lora:"]:  # the seen LoRAs finish
            _done(shared, "lora:b")
        if command[-2:] == ["--only", "t2l-recon"]:
            assert (shared / "stages" / "lora_b.json").is_file()  # after every seen LoRA
            _done(shared, "t2l-recon")
        return 0

    monkeypatch.setattr(script.subprocess, "call", fake_call)
    assert script.main([]) == 0
    names = [c[c.index("--work") + 1].rsplit("/", 1)[-1] for c in calls]
    assert names == ["bench-quality-v2", "bench-quality-v2", "bench-quality-v2-shipped"] + ["bench-quality-v2-final"] * 3
    assert calls[0][-2:] == ["--only", "lora:"] and calls[1][-2:] == ["--only", "t2l-recon"]
    assert calls[2][-2:] == ["--methods", "t2l"]
    final_calls = {c[c.index("--split") + 1]: c for c in calls[3:]}
    assert list(final_calls) == ["validation", "test", "seen"]  # the final baselines, validation first
    for split, c in final_calls.items():
        assert c[c.index("--multitask-steps") + 1] == "8000" and "--t2l-checkpoint" not in c
        assert c[c.index("--methods") + 1].split(",") == list(script.BASELINES[split])
    assert "t2l" not in ",".join(script.BASELINES["test"]).split(",")  # T2L meets the test split only in v2_finish
    final = home / "runs" / "bench-quality-v2-final"
    assert (final / "lora-library" / "_multitask" / "adapter_config.json").is_file()  # the copy
    assert not (home / "runs" / "bench-quality-v2-final.partial").exists()

    # everything reported done: nothing runs again
    (home / "runs" / "bench-quality-v2-shipped" / "report-validation").mkdir(parents=True)
    (home / "runs" / "bench-quality-v2-shipped" / "report-validation" / "results.json").write_text("{}")
    _multitask_trained(final, 8000)
    for split in ("validation", "test", "seen"):
        _baselines_report(final, split, script.BASELINES[split])
    calls.clear()
    capsys.readouterr()
    assert script.main([]) == 0 and calls == []
    assert capsys.readouterr().out.count("[done]") == 7


def _baselines_report(final: Path, split: str, names) -> Path:
    report = final / f"report-{split}"
    report.mkdir(parents=True, exist_ok=True)
    (report / "results.json").write_text(json.dumps({"methods": [{"name": n} for n in names]}))
    return report / "results.json"


def test_a_side_is_scored_only_with_all_its_baselines_and_the_final_lora(home):
    import os

    script = load_script("scripts/v2_side_queue.py")
    final = home / "runs" / "bench-quality-v2-final"
    _multitask_trained(final, 8000)
    lora = final / "lora-library" / "_multitask" / "adapter_model.safetensors"
    lora.parent.mkdir(parents=True)
    lora.write_bytes(b"final")
    _baselines_report(final, "validation", script.BASELINES["validation"])
    _baselines_report(final, "test", ("base", "desc-prompt"))  # icl3 and the LoRA missing
    old = _baselines_report(final, "seen", script.BASELINES["seen"])
    os.utime(old, (lora.stat().st_mtime - 60,) * 2)  # made before the final LoRA: it scored another
    steps = {s.name: s.done for s in script.plan(home, sys.executable)}
    assert steps["final-validation"] and not steps["final-test-baselines"] and not steps["final-seen-baselines"]
    (final / "report-test" / "results.json").write_text("not json")
    assert not script.baselines_scored(final, "test")


def test_an_800_step_lora_in_the_final_dir_is_not_the_final_baseline(home):
    script = load_script("scripts/v2_side_queue.py")
    final = home / "runs" / "bench-quality-v2-final"
    _multitask_trained(final, 800)
    (final / "report-validation").mkdir()
    (final / "report-validation" / "results.json").write_text("{}")
    steps = {s.name: s.done for s in script.plan(home, sys.executable)}
    assert steps["final-copy"] and not steps["final-validation"]


def test_a_failing_step_stops_the_queue_and_a_missing_lora_refuses(home, monkeypatch, capsys):
    script = load_script("scripts/v2_side_queue.py")
    calls = []
    monkeypatch.setattr(script.subprocess, "call", lambda command, cwd, env: calls.append(command) or 3)
    assert script.main([]) == 3 and len(calls) == 1
    assert "seen-loras exited with 3; rerun this script to resume" in capsys.readouterr().err
    assert script.main(["--dry-run"]) == 0 and len(calls) == 1
    (home / "runs" / "bench-quality-v2" / "lora-library" / "_multitask" / "adapter_config.json").unlink()
    assert script.main([]) == 2 and "no v2 multi-task LoRA" in capsys.readouterr().err
