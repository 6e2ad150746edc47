"""scripts/ship_checkpoint.py: ships only what the ship rule chose and the reports scored, writes the checkpoint,
its card and the demo task together, and picks a demo task where the adapter does the task rather than echo it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.scripts import REPO, load_script
from text2lora.checkpoint import CheckpointMeta, save_checkpoint
from text2lora.config import ExamplesConfig, HyperNetConfig
from text2lora.encoders import EncoderSpec
from text2lora.hypernet import build_hypernetwork
from text2lora.models.targets import TargetLayout, TargetSpec

SHAPES = {"q_proj": (16, 16), "v_proj": (16, 8)}


def _checkpoint(path: Path, trained: bool = True) -> Path:
    layout = TargetLayout("llama", 2, tuple(
        TargetSpec(name, d_in, d_out, tuple(f"model.layers.{i}.self_attn.{name}" for i in range(2)))
        for name, (d_in, d_out) in SHAPES.items()))
    cfg = HyperNetConfig(latent=16, head_in=32, examples=ExamplesConfig(max_examples=4))
    meta = CheckpointMeta(hypernet=cfg, base_model="bundled:smollm2-135m-instruct", layout=layout,
                          encoder=EncoderSpec(kind="one-hot", name="", dim=12, tasks=[f"t{i}" for i in range(12)]),
                          trained=trained, info={"recipe": "sft", "init_lora": "/home/someone/runs/_multitask",
                                                 "tasks": ["t0", "t1"]})
    net = build_hypernetwork(cfg, encoder_dim=12, n_layers=2, shapes=SHAPES, seed=0)
    return save_checkpoint(net, meta, path)


def _task(name, score, copy, base, metric="generation", split="unseen"):
    return name, score, copy, base, metric, split


def _report(path: Path, checkpoint: Path, tasks, claims_rows=()) -> Path:
    """A test report: per task, t2l[train]'s score and copy rate and the base model's score (desc-prompt 0)."""
    path.mkdir(parents=True)
    per_task = {"t2l[train]": {}, "base": {}, "desc-prompt": {}}
    for name, score, copy, base, _, _ in tasks:
        per_task["t2l[train]"][name] = {"score": score, "copy_rate": copy}
        per_task["base"][name] = {"score": base, "copy_rate": 0.0}
        per_task["desc-prompt"][name] = {"score": 0.0, "copy_rate": 0.0}
    results = {
        "columns": ["base", "desc-prompt", "t2l[train]"],
        "methods": [{"name": "base"}, {"name": "t2l", "kind": "t2l", "path": str(checkpoint)}],
        "tasks": [{"name": n, "metric": m, "split": s} for n, _, _, _, m, s in tasks],
        "per_task": per_task,
        "averages": {c: {"unseen": {"score": sum(v["score"] for v in per_task[c].values()) / len(tasks),
                                    "copy_rate": 0.05}} for c in per_task},
    }
    (path / "results.json").write_text(json.dumps(results))
    lines = ["| claim | verdict | figures |", "|---|---|---|", *claims_rows]
    (path / "claims.md").write_text("# Claims\n\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture()
def world(tmp_path, monkeypatch):
    script = load_script("scripts/ship_checkpoint.py")
    sys.path.insert(0, str(REPO / "scripts"))
    import make_demo_task

    built = []

    def build(name, n=6, library=None):
        if name == "seen.task":
            raise ValueError("seen.task is a seen task; the demo task must be unseen")
        built.append(name)
        return {"task": name, "instances": [{"input": "x", "output": "y"}] * n}

    monkeypatch.setattr(make_demo_task, "build", build)
    ckpt = _checkpoint(tmp_path / "best")
    decision = tmp_path / "decision"
    decision.mkdir()
    (decision / "ship-decision.json").write_text(json.dumps(
        {"ship": True, "rules": [{"rule": "1. T2L >= multi-task LoRA + 1", "verdict": "holds", "figures": "+2.0"}]}))
    report = _report(tmp_path / "test", ckpt, [
        _task("echoes", 0.9, 0.8, 0.1),  # scores well by repeating its input: never the demo
        _task("does.it", 0.7, 0.0, 0.1),
        _task("does.it.better", 0.8, 0.1, 0.1),
        _task("choice", 1.0, 0.0, 0.0, metric="accuracy"),  # nothing to watch it write
    ], claims_rows=["| T2L >= 3-shot ICL | DOES NOT HOLD | 10.0 vs 12.0 |", "| T2L >= base + 10 | holds | +30 |"])
    dest = tmp_path / "shipped"
    dest.mkdir()
    (dest / "README.md").write_text("the old card")
    (dest / "stale.txt").write_text("left over")
    argv = ["--checkpoint", str(ckpt), "--decision", str(decision), "--report", str(report), "--demo-from", str(report), "--dest", str(dest),
            "--demo-out", str(tmp_path / "demo_task.json"), "--demo-n", "2"]
    return script, ckpt, decision, report, dest, argv, built, tmp_path


def test_ships_the_weights_as_they_are_with_a_card_from_the_reports_and_a_demo_task(world, capsys):
    script, ckpt, _, _, dest, argv, built, tmp = world
    assert script.main(argv) == 0
    assert (dest / "hypernet.safetensors").read_bytes() == (ckpt / "hypernet.safetensors").read_bytes()
    assert not (dest / "stale.txt").exists()  # the directory is replaced whole
    info = json.loads((dest / "t2l_config.json").read_text())["info"]
    assert "/home/someone" not in json.dumps(info) and info["tasks"] == ["t0", "t1"]
    card = (dest / "README.md").read_text()
    assert "| 1. T2L >= multi-task LoRA + 1 | holds | +2.0 |" in card
    assert "| base model | 7.5 | 5.0 |" in card  # the averages (0.1, 0.1, 0.1, 0), x100
    assert "T2L >= 3-shot ICL (does not hold): 10.0 vs 12.0" in card and "base + 10" not in card
    assert "up to 4 worked examples" in card
    assert built == ["does.it.better"] and "`does.it.better`" in card
    demo = json.loads((tmp / "demo_task.json").read_text())
    assert demo["task"] == "does.it.better" and len(demo["instances"]) == 2
    from text2lora.checkpoint import load_checkpoint

    load_checkpoint(dest)  # what was shipped loads


def test_dry_run_writes_nothing(world):
    script, _, _, _, dest, argv, _, tmp = world
    assert script.main([*argv, "--dry-run"]) == 0
    assert (dest / "README.md").read_text() == "the old card" and not (tmp / "demo_task.json").exists()


@pytest.mark.parametrize("spoil, message", [
    ("keep", "said keep the shipped checkpoint"),
    ("bad-json", "is not JSON"),
    ("other-report", "its figures are another checkpoint's"),
    ("too-big", "at most"),
    ("untrained", "untrained"),
    ("seen-demo", "the demo task must be unseen"),
])
def test_refuses_and_leaves_everything_as_it_was(world, capsys, spoil, message, monkeypatch):
    script, ckpt, decision, report, dest, argv, _, tmp = world
    if spoil == "keep":
        (decision / "ship-decision.json").write_text(json.dumps(
            {"ship": False, "rules": [{"rule": "2. >= shipped + 2", "verdict": "DOES NOT HOLD", "figures": ""}]}))
    elif spoil == "bad-json":
        (decision / "ship-decision.json").write_text("{ship: yes")
    elif spoil == "other-report":
        results = json.loads((report / "results.json").read_text())
        results["methods"][1]["path"] = str(tmp / "another")
        (report / "results.json").write_text(json.dumps(results))
    elif spoil == "too-big":
        monkeypatch.setattr(script, "MAX_BYTES", 1000)
    elif spoil == "untrained":
        _checkpoint(ckpt, trained=False)
    elif spoil == "seen-demo":
        argv = [*argv, "--demo-task", "seen.task"]
    assert script.main(argv) == 1
    assert message in capsys.readouterr().err
    assert (dest / "README.md").read_text() == "the old card" and (dest / "stale.txt").exists()
    assert not (tmp / "demo_task.json").exists()


def test_no_demo_task_when_the_adapter_does_none_visibly(world, tmp_path):
    script, ckpt, *_ = world
    results = json.loads(_report(tmp_path / "weak", ckpt, [
        _task("echoes", 0.9, 0.8, 0.1),
        _task("barely", 0.45, 0.0, 0.0),  # under half right
        _task("base.does.it", 0.9, 0.0, 0.8),  # the base model does it too
        _task("seen.one", 1.0, 0.0, 0.0, split="seen"),
    ]).joinpath("results.json").read_text())
    with pytest.raises(script.ShipError, match="could not show it doing a task"):
        script.pick_demo_task(results)
