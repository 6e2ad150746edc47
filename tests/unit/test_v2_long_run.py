"""scripts/v2_long_run.py: the long run's levers come from the short runs' verdicts, and it will not start early."""

from __future__ import annotations

import pytest

from tests.scripts import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/v2_long_run.py")


def summary(**kept) -> dict:
    runs = {name: {"status": "finished", "kept": kept.get(name, False)} for name in ("R0", "R1", "R4")}
    runs["R2"] = {"status": "not run"}
    for name in ("R3", "R5"):
        if name in kept:
            runs[name] = {"status": "finished", "kept": kept[name]}
    return {"runs": runs}


def test_kept_levers_are_switched_on(tmp_path, script):
    lora = tmp_path / "_multitask"
    lora.mkdir()
    (lora / "adapter_config.json").write_text("{}")
    out = script.levers(summary(R1=True, R4=True, R3=True), lora)
    assert out == ["hypernet.offset=true", f"init_lora={lora}", "data.shots_zero_prob=0.25",
                   "data.shots_only_prob=0.25", "copy_downweight=0.0", "data.tasks_per_batch=4",
                   "data.examples_per_task=2"]


def test_dropped_levers_are_switched_off(tmp_path, script):
    out = script.levers(summary(R1=False, R4=False), tmp_path / "nothing")
    assert out == ["hypernet.offset=false", "hypernet.examples=null", "data.shots_only_prob=0.0",
                   "copy_downweight=0.0"]


def test_it_waits_for_the_short_runs_and_the_lora(tmp_path, script):
    early = summary(R1=True, R4=True)
    early["runs"]["R4"]["status"] = "unfinished (step 200)"
    with pytest.raises(ValueError, match="not finished: R4"):
        script.levers(early, tmp_path)
    with pytest.raises(ValueError, match="no multi-task LoRA"):
        script.levers(summary(R1=True), tmp_path / "missing")


def test_cli_refuses_another_library(tmp_path, script, capsys):
    (tmp_path / "s.json").write_text('{"runs": {"R0": {"status": "finished"}, "R1": {"status": "finished"}, '
                                     '"R4": {"status": "finished"}}}')
    code = script.main(["--summary", str(tmp_path / "s.json"), "--library", str(tmp_path), "--dry-run"])
    assert code == 2 and "801fa692f69dd9ef" in capsys.readouterr().err
    assert script.main(["--summary", str(tmp_path / "none.json"), "--dry-run"]) == 2


def test_the_command_saves_often_and_resumes_an_existing_run(tmp_path, script, monkeypatch, capsys):
    import text2lora.data.library as library

    monkeypatch.setattr(library, "library_fingerprint", lambda path: script.LIBRARY_FINGERPRINT)
    (tmp_path / "s.json").write_text('{"runs": {"R0": {"status": "finished"}, "R1": {"status": "finished"}, '
                                     '"R4": {"status": "finished"}}}')
    args = ["--summary", str(tmp_path / "s.json"), "--library", str(tmp_path), "--out", str(tmp_path / "run"),
            "--threads", "1", "--dry-run"]
    assert script.main(args) == 0
    first = capsys.readouterr().out
    assert "--set loop.save_every=50" in first and "--set loop.threads=1" in first and "--resume" not in first
    (tmp_path / "run" / "ckpt-0000125").mkdir(parents=True)
    assert script.main(args + ["--save-every", "25"]) == 0
    again = capsys.readouterr().out
    assert "--set loop.save_every=25" in again and again.rstrip().endswith("--resume")
