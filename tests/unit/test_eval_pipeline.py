"""The benchmark stage runner (benchmarks/stages.py) and task selection (benchmarks/quality.py): a stage with
unchanged inputs is skipped, changed inputs rerun it from a clean output, an interrupted stage resumes, a
failure keeps what finished; selection is deterministic and keeps unseen tasks out of training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.scripts import load_script


def _load(name: str):
    return load_script(f"benchmarks/{name}.py")


stages = _load("stages")


def write_stage(tmp_path: Path, name: str, text: str, *, fail: bool = False, resume: bool = False):
    out = tmp_path / f"{name}.txt"
    script = f"import sys, pathlib; p = pathlib.Path({str(out)!r}); "
    script += "sys.exit(3)" if fail else f"p.write_text({text!r} + ' ' + ' '.join(sys.argv[1:]))"
    marker = tmp_path / f"{name}.ckpt"
    return stages.Stage(name, f"write {name}", [sys.executable, "-c", script], {"text": text}, done=out.is_file,
                        clean=[out], resume_args=["--resume"] if resume else [], can_resume=marker.exists), out


def test_unchanged_inputs_skip_and_changed_inputs_rerun(tmp_path):
    lines: list[str] = []
    runner = stages.StageRunner(tmp_path / "state", echo=lines.append)
    stage, out = write_stage(tmp_path, "a", "one")
    assert runner.run(stage, 1, 1).status == "ran" and out.read_text().strip() == "one"
    out.write_text("kept")
    assert runner.run(stage, 1, 1).status == "cached" and out.read_text() == "kept"
    assert any("cached (inputs unchanged" in line for line in lines)
    changed, _ = write_stage(tmp_path, "a", "two")
    assert runner.run(changed, 1, 1).status == "ran" and out.read_text().strip() == "two"
    out.unlink()  # output gone: rerun even though the record says done
    assert runner.run(changed, 1, 1).status == "ran"
    forced = stages.StageRunner(tmp_path / "state", force=("a",), echo=lines.append)
    assert forced.run(changed, 1, 1).status == "ran"


def test_a_failed_stage_is_recorded_and_resumes_only_from_a_checkpoint(tmp_path):
    runner = stages.StageRunner(tmp_path / "state", echo=lambda s: None)
    failing, _ = write_stage(tmp_path, "b", "x", fail=True, resume=True)
    with pytest.raises(SystemExit, match="stage b failed"):
        runner.run(failing, 1, 1)
    assert runner.record("b")["status"] == "running"
    assert runner.status(failing) == "fresh"  # nothing to resume from
    (tmp_path / "b.ckpt").write_text("")  # the failed run left a checkpoint
    assert runner.status(failing) == "resume"
    other, _ = write_stage(tmp_path, "b", "y", fail=True, resume=True)
    assert runner.status(other) == "fresh"  # other inputs: start over


def test_resume_passes_the_resume_args(tmp_path):
    out = tmp_path / "c.txt"
    cmd = [sys.executable, "-c", f"import sys, pathlib; pathlib.Path({str(out)!r}).write_text(' '.join(sys.argv[1:]))"]
    marker = tmp_path / "c.ckpt"
    stage = stages.Stage("c", "", cmd, {"k": 1}, done=out.is_file, resume_args=["--resume"], can_resume=marker.exists)
    runner = stages.StageRunner(tmp_path / "state", echo=lambda s: None)
    runner._write("c", {"status": "running", "fingerprint": stage.fingerprint, "seconds_so_far": 5.0})
    marker.write_text("")
    outcome = runner.run(stage, 1, 1)
    assert outcome.status == "resumed" and out.read_text() == "--resume"
    assert runner.record("c")["status"] == "done" and runner.record("c")["seconds"] >= 5.0


def test_task_selection_is_deterministic_and_keeps_unseen_out_of_training(tmp_path):
    from tests.tiny import build_library

    quality = _load("quality")
    library = build_library(tmp_path / "lib", n=64)  # 48 training instances per task
    scale = quality.Scale(seen_eval=2, recon_extra=1, train_tasks=3, unseen_eval=1, lora_steps=1, multitask_steps=1,
                          recon_steps=1, sft_steps=1, max_instances=2, groups="train", expected_minutes=1)
    a = quality.select_tasks(library, scale, seed=0)
    assert a == quality.select_tasks(library, scale, seed=0)
    assert len(a["seen_eval"]) == 2 and set(a["seen_eval"]) <= set(a["lora_tasks"]) <= set(a["train_tasks"])
    assert a["unseen_eval"] == ["first"] and "first" not in a["train_tasks"]
    assert len(a["lora_tasks"]) == 3


def test_changing_a_step_count_reruns_only_what_it_feeds(tmp_path):
    import argparse
    import dataclasses

    from tests.tiny import build_library

    quality = _load("quality")
    library = build_library(tmp_path / "lib", n=64)
    scale = quality.Scale(seen_eval=2, recon_extra=1, train_tasks=3, unseen_eval=1, lora_steps=1, multitask_steps=1,
                          recon_steps=1, sft_steps=1, max_instances=2, groups="train", expected_minutes=1)
    work = tmp_path / "work"
    args = argparse.Namespace(library=str(library), scale="quick", seed=0, methods=None, groups=None)
    select = quality.build_stages(args, scale, work)[0]
    (work / "tasks.json").parent.mkdir(parents=True)
    (work / "tasks.json").write_text(json.dumps(quality.select_tasks(library, scale, 0)))
    (work / "stages").mkdir()
    (work / "stages" / "select.json").write_text(json.dumps({"fingerprint": select.fingerprint}))

    def prints(s):
        return {st.name: st.fingerprint for st in quality.build_stages(args, s, work)}

    before = prints(scale)
    after = prints(dataclasses.replace(scale, recon_steps=2))
    assert len(before) > 4 and before.keys() == after.keys()
    assert {n for n in before if before[n] != after[n]} == {"t2l-recon"}
    more = prints(dataclasses.replace(scale, train_tasks=4))  # a selection size: the selection reruns first
    assert more["select"] != before["select"] and len(more) == 1


def test_scales_are_ordered():
    quality = _load("quality")
    quick, small = quality.SCALES["quick"], quality.SCALES["small"]
    assert quick.expected_minutes <= 25 and small.expected_minutes <= 150
    for field in ("seen_eval", "unseen_eval", "lora_steps", "sft_steps", "train_tasks"):
        assert getattr(quick, field) <= getattr(small, field)


def test_claims_report_holds_and_fails_on_the_numbers(tmp_path):
    claims = _load("claims")
    tasks = [{"name": "s1", "split": "seen"}, {"name": "s2", "split": "seen"},
             {"name": "u1", "split": "unseen"}, {"name": "u2", "split": "unseen"}]
    seen = {"task-lora": 0.50, "t2l-recon[train]": 0.495, "multitask-lora": 0.40, "t2l-sft[train]": 0.45,
            "t2l-sft[random]": 0.30}
    unseen = {"base": 0.20, "desc-prompt": 0.25, "multitask-lora": 0.30, "t2l-sft[train]": 0.35,
              "t2l-sft[heldout]": 0.33, "t2l-sft[random]": 0.34, "t2l-sft[other]": 0.31}
    avg, per_task = {}, {}
    for split, cols, names in (("seen", seen, ("s1", "s2")), ("unseen", unseen, ("u1", "u2"))):
        for col, v in cols.items():
            avg.setdefault(col, {})[split] = {"score": v}
            for n in names:
                per_task.setdefault(col, {})[n] = {"score": v}
    (tmp_path / "results.json").write_text(json.dumps({"averages": avg, "per_task": per_task, "tasks": tasks}))
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1]
            for line in claims.check(tmp_path).splitlines() if line.startswith("| ") and "verdict" not in line}
    assert rows["seen: T2L-recon reaches >= 98% of the per-task LoRAs"] == "holds"  # 99%
    assert rows["seen: T2L-SFT >= multi-task LoRA"] == "holds"
    assert rows["seen: aligned descriptions beat random strings clearly (T2L-SFT)"] == "holds"  # +15
    assert rows["unseen: T2L-SFT > base + description in the prompt"] == "holds"
    assert rows["unseen: aligned descriptions beat random strings clearly (T2L-SFT)"] == "DOES NOT HOLD"  # +1
    # a column that was not scored is reported as such, not as a pass
    del avg["t2l-recon[train]"]
    (tmp_path / "results.json").write_text(json.dumps({"averages": avg, "per_task": per_task, "tasks": tasks}))
    assert "| seen: T2L-recon reaches >= 98% of the per-task LoRAs | not measured |" in claims.check(tmp_path)


def _margin_report(tmp_path: Path, aligned: list[list[float]], random_: list[list[float]]) -> str:
    """claims.md text for two unseen tasks whose per-instance scores are given (rows: tasks)."""
    claims = _load("claims")
    tasks = [{"name": f"u{i}", "split": "unseen"} for i in range(len(aligned))]
    records, per_task, avg = [], {}, {}
    for label, rows in (("t2l-sft[train]", aligned), ("t2l-sft[random]", random_)):
        for i, values in enumerate(rows):
            records.append({"label": label, "task": f"u{i}", "scores": {"per_instance_rouge_l": values}})
            per_task.setdefault(label, {})[f"u{i}"] = {"score": sum(values) / len(values)}
        avg[label] = {"unseen": {"score": sum(per_task[label][t["name"]]["score"] for t in tasks) / len(tasks)}}
    (tmp_path / "results.json").write_text(json.dumps({"averages": avg, "per_task": per_task, "tasks": tasks,
                                                       "records": records}))
    return next(line for line in claims.check(tmp_path).splitlines()
                if line.startswith("| unseen: aligned descriptions beat random strings"))


def test_claims_margin_needs_an_interval_above_zero(tmp_path):
    # the same +5-point average gap: steady on every instance, or two big wins among many small losses
    steady = _margin_report(tmp_path, [[0.35] * 20, [0.55] * 20], [[0.30] * 20, [0.50] * 20])
    assert "| holds |" in steady and "95% CI [+5.0, +5.0] over instances" in steady
    lumpy_a = [[1.0, 1.0] + [0.0] * 18, [1.0, 1.0] + [0.0] * 18]
    lumpy_r = [[0.0, 0.0] + [0.05] * 18, [0.0, 0.0] + [0.05] * 18]
    lumpy = _margin_report(tmp_path, lumpy_a, lumpy_r)
    assert "DOES NOT HOLD" in lumpy and "+5.5 points" in lumpy and "better on 2 tasks" in lumpy
    low = float(lumpy.split("95% CI [")[1].split(",")[0])
    assert low < 0  # two lucky instances per task are not a clear margin
    # per-instance scores of different lengths are not paired: no interval, the plain rule decides
    unpaired = _margin_report(tmp_path, [[0.4] * 20, [0.6] * 20], [[0.3] * 19, [0.5] * 19])
    assert "| holds |" in unpaired and "CI" not in unpaired


def test_v2_claims_gain_interval_win_share_and_copy_rate(tmp_path):
    claims = _load("claims")
    tasks = [{"name": f"u{i}", "split": "unseen"} for i in range(3)]
    per_instance = {  # the headline, per instance; t2l beats random by 10 on two tasks, loses 2 on one
        "t2l[train]": [[0.6] * 10, [0.5] * 10, [0.2] * 10], "t2l[random]": [[0.5] * 10, [0.4] * 10, [0.22] * 10],
        "t2l[heldout]": [[0.6] * 10, [0.45] * 10, [0.2] * 10], "multitask-lora": [[0.3] * 10] * 3,
        "icl3": [[0.45] * 10] * 3, "base": [[0.1] * 10] * 3, "desc-prompt": [[0.2] * 10] * 3}
    copy = {"t2l[train]": 0.30, "desc-prompt": 0.20}
    records, per_task, avg = [], {}, {}
    for label, rows in per_instance.items():
        for i, values in enumerate(rows):
            records.append({"label": label, "task": f"u{i}", "scores": {"per_instance_score": values}})
            per_task.setdefault(label, {})[f"u{i}"] = {"score": sum(values) / len(values)}
        avg[label] = {"unseen": {"score": sum(per_task[label][f"u{i}"]["score"] for i in range(3)) / 3,
                                 **({"copy_rate": copy[label]} if label in copy else {})}}
    (tmp_path / "results.json").write_text(json.dumps({"averages": avg, "per_task": per_task, "tasks": tasks,
                                                       "records": records, "columns": list(per_instance)}))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in claims.check(tmp_path).splitlines()
            if line.startswith("| ") and "verdict" not in line}
    assert "| holds |" in rows["T2L (own description) >= multi-task LoRA + 3, interval above 0"]  # +13.3
    assert "| DOES NOT HOLD |" in rows["T2L (own description) >= 3-shot ICL"]  # 43.3 vs 45
    assert "| holds |" in rows["T2L (own description) >= base + 10"]
    own_random = rows["own description >= random strings + 5, interval above 0, better on 2/3 of tasks"]
    assert "| holds |" in own_random and "better on 2 of 3 tasks" in own_random  # +6.0
    held_out = rows["held-out descriptions within 3 points of the own description"]
    assert "| holds |" in held_out and "-1.7 (needs >= -3)" in held_out
    assert "| DOES NOT HOLD |" in rows["T2L's copy rate <= the description-in-prompt base model's + 5 points"]


def test_claims_complete_old_multiple_choice_records_from_the_library(tmp_path):
    from text2lora.data.library import write_index, write_task_instances
    from text2lora.data.task import Instance, Task

    claims = _load("claims")
    lib = tmp_path / "lib"
    answers = [0, 1, 1, 0]
    write_task_instances(lib, "mc", [Instance.choice(f"q{i}", ["a", "b"], a) for i, a in enumerate(answers)],
                         ["test"] * 4)
    write_index(lib, [Task(name="mc", source="mc", definition="Pick.", metric="multiple_choice", split="unseen",
                           counts={"train": 0, "validation": 0, "test": 4, "total": 4})], meta={}, dropped=[])
    record = {"label": "base", "task": "mc", "scores": {"choices": [0, 0, 1], "accuracy": 2 / 3}}
    results = {"config": {"library": str(lib)}, "records": [record]}
    assert claims.per_instance_scores(results)["base"]["mc"].tolist() == [1.0, 0.0, 1.0]
    record["scores"]["accuracy"] = 1.0  # not the instances it scored: left out rather than guessed
    assert claims.per_instance_scores(results) == {}
    record["scores"]["per_instance_correct"] = [0.0, 1.0]  # new records carry their own
    assert claims.per_instance_scores(results)["base"]["mc"].tolist() == [0.0, 1.0]


def test_description_spread_gram_matches_the_full_updates():
    import torch

    from text2lora.config import LoraConfig
    from text2lora.lora import LoraWeights
    from text2lora.models.targets import TargetLayout, TargetSpec

    spread = _load("description_spread")
    paths = lambda m: tuple(f"model.layers.{i}.self_attn.{m}" for i in range(2))  # noqa: E731
    layout = TargetLayout("llama", 2, (TargetSpec("q_proj", 6, 5, paths("q_proj")),
                                       TargetSpec("v_proj", 6, 3, paths("v_proj"))))
    g = torch.Generator().manual_seed(0)
    factors = {s.name: (torch.randn(3, 2, 4, s.d_in, generator=g), torch.randn(3, 2, s.d_out, 4, generator=g))
               for s in layout.targets}
    w = LoraWeights(factors, layout, LoraConfig(rank=4, alpha=8.0))
    flat = torch.cat([torch.einsum("nLor,nLrd->nLod", b, a).reshape(3, -1) for a, b in factors.values()], dim=1)
    assert torch.allclose(spread.gram(w, w), flat @ flat.T, rtol=1e-4, atol=1e-3)
