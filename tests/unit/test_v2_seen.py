"""The v2 seen benchmark: its selection rules (benchmarks/v2/seen.json), the stages of `quality.py --scale v2
--split seen`, and its claims; and a guard that adding it left the v2 test/validation stages (their names,
commands and inputs, so their cache keys) exactly as they were."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1].parent
#: the v2 test/validation plans for the fixture below, made by the code before the seen split existed
GOLDEN = REPO / "tests" / "fixtures" / "v2_stages.json"


def _load(name: str):
    from tests.unit.test_eval_pipeline import _load as load

    return load(name)


def _normalise(obj, tmp_path: Path):
    """``obj`` with this machine's paths and the fixture library's hash (tests/tiny.py's business) as placeholders."""
    from text2lora.paths import sha256_file

    text = json.dumps(obj, sort_keys=True)
    for path, mark in ((sys.executable, "<python>"), (str(tmp_path), "<tmp>"), (str(REPO), "<repo>")):
        text = text.replace(json.dumps(path)[1:-1], mark)
    return json.loads(text.replace(sha256_file(tmp_path / "lib" / "index.json"), "<fixture library index>"))


def _fixture(root: Path, split: str, methods: str | None, selection: list[str]):
    """quality.py, its args and work dir for a tiny library and a stand-in checkpoint, with ``split``'s selection
    (``selection``) in place as a finished select stage would leave it."""
    from tests.tiny import build_library

    quality = _load("quality")
    library = root / "lib"
    if not (library / "index.json").is_file():
        build_library(library, n=64)
    checkpoint = root / "ckpt"
    checkpoint.mkdir(exist_ok=True)
    (checkpoint / "hypernet.safetensors").write_bytes(b"stand-in weights")
    work = root / "work"
    args = argparse.Namespace(library=str(library), scale="v2", split=split, seed=0, methods=methods, groups=None,
                              t2l_checkpoint=str(checkpoint), multitask_steps=None)
    select = quality.build_v2_stages(args, work)[0]
    name, file = ("select-seen", quality.V2_SEEN_SELECTION) if split == "seen" else ("select", "tasks.json")
    (work / "stages").mkdir(parents=True, exist_ok=True)
    (work / file).write_text(json.dumps({"eval": selection}))
    (work / "stages" / f"{name}.json").write_text(json.dumps({"status": "done", "fingerprint": select.fingerprint}))
    return quality, args, work


def v2_plan(root: Path, split: str, methods: str | None = None, selection=("first",)) -> list[dict]:
    """The v2 stages of ``split`` for the fixture, as ``[{name, command, inputs}]`` with the machine's paths
    replaced by placeholders."""
    quality, args, work = _fixture(root, split, methods, list(selection))
    return _normalise([{"name": s.name, "command": s.command, "inputs": s.inputs}
                       for s in quality.build_v2_stages(args, work)], root)


def test_v2_test_and_validation_stages_are_unchanged(tmp_path):
    """Names, commands and inputs (so the cache keys) of the v2 test/validation stages are those the code made
    before the seen split existed: the cached v2 baseline (hours of eval and the multi-task LoRA) stays valid. A
    failure here means a cached v2 stage would rerun; if that is intended (a changed configs/smollm2-lora.yaml, a
    new benchmark.json), say so in the commit and rewrite the golden with `python -m tests.unit.test_v2_seen`."""
    golden = json.loads(GOLDEN.read_text())
    assert sorted(golden) == ["test/base,t2l", "test/default", "validation/base,t2l", "validation/default"]
    for k, key in enumerate(sorted(golden)):
        split, methods = key.split("/")
        assert v2_plan(tmp_path / f"p{k}", split, None if methods == "default" else methods) == golden[key], key


def test_a_checkpoint_that_reads_examples_is_also_scored_with_shots(tmp_path):
    """Issue 15 on the v2 sides: a checkpoint with ``hypernet.examples`` adds t2l+shots and the shuffled control,
    own descriptions only; an explicit --methods list is taken as given."""
    quality, args, work = _fixture(tmp_path, "validation", None, ["first"])
    (Path(args.t2l_checkpoint) / "t2l_config.json").write_text(json.dumps(
        {"hypernet": {"examples": {"max_examples": 8, "pooling": "attention", "hidden": 256}}}))
    evals = [s for s in quality.build_v2_stages(args, work) if s.name == "eval"]
    assert len(evals) == 1
    command, inputs = evals[0].command, evals[0].inputs
    assert command[command.index("-m", 3) + 1] == "base,desc-prompt,icl3,multitask-lora,t2l,t2l+shots,t2l+shuffled-shots"
    assert "--method-groups=t2l+shots=train" in command and "--method-groups=t2l+shuffled-shots=train" in command
    assert inputs["methods"][-2:] == ["t2l+shots", "t2l+shuffled-shots"]
    args.methods = "base,t2l"
    command = [s for s in quality.build_v2_stages(args, work) if s.name == "eval"][0].command
    assert command[command.index("-m", 3) + 1] == "base,t2l" and not any("method-groups" in c for c in command)


SEEN_TASKS = ["copy", "reverse", "upper"]  # the tiny library's seen tasks


def test_seen_split_stages(tmp_path):
    quality, args, work = _fixture(tmp_path, "seen", None, SEEN_TASKS)
    stages = {s.name: s for s in quality.build_v2_stages(args, work)}
    assert list(stages) == ["select-seen", "lora:_multitask", "lora:copy", "lora:reverse", "lora:upper",
                            "t2l-recon", "eval-seen"]
    # the multi-task LoRA is the test side's stage itself: its record is found done, nothing retrains
    test_side = {s["name"]: s for s in v2_plan(tmp_path / "test-side", "test")}
    seen_side = {s["name"]: s for s in v2_plan(tmp_path / "seen-side", "seen", selection=SEEN_TASKS)}
    assert seen_side["lora:_multitask"] == test_side["lora:_multitask"]
    assert not ({"select", "eval"} & set(seen_side))  # the test/validation records are never touched
    lib, lora_lib = str(tmp_path / "lib"), work / "lora-library"
    for task in SEEN_TASKS:
        stage = stages[f"lora:{task}"]
        assert stage.command[-6:] == ["--task", task, "--config", str(work / "configs" / f"lora-{task}.yaml"),
                                      "--out", str(lora_lib)]
        loop = stage.inputs["config"]["loop"]
        assert (loop["steps"], loop["eval_every"], loop["early_stop_patience"]) == (100, 10, 3)
        assert stage.inputs["config"]["data"]["library"] == lib
    recon = stages["t2l-recon"]
    assert recon.inputs["config"]["loop"]["steps"] == 10_000 and sorted(recon.inputs["adapters"]) == SEEN_TASKS
    assert recon.command[recon.command.index("--lora-library") + 1] == str(lora_lib)
    cmd = stages["eval-seen"].command
    cmd = cmd[cmd.index("eval"):]
    flag = lambda name: cmd[cmd.index(name) + 1]  # noqa: E731
    assert flag("-m") == "base,multitask-lora,task-lora,t2l-recon,t2l" and flag("--tasks") == "copy,reverse,upper"
    assert (flag("--groups"), flag("--method-groups"), flag("--max-instances")) == ("train", "t2l-recon=train", "30")
    assert flag("--t2l-recon") == str(work / "t2l-recon" / "best") and flag("--lora-library") == str(lora_lib)
    assert flag("--t2l-checkpoint") == str(tmp_path / "ckpt") and flag("--report") == str(work / "report-seen")
    assert flag("--cache-dir") == str(work / "eval-cache")  # shared with the other sides: base scores once a task
    # new descriptions in the library rerun what learns from or is scored with them, not the LoRAs
    from text2lora.data.library import TaskLibrary, write_index

    lib_dir = tmp_path / "lib"
    tasks = TaskLibrary.load(lib_dir).tasks
    tasks[[t.name for t in tasks].index("copy")].descriptions.append("A new description.")
    write_index(lib_dir, tasks, meta={"fixture": True}, dropped=[])
    (work / "stages" / "select-seen.json").write_text(json.dumps(
        {"status": "done", "fingerprint": quality.build_v2_stages(args, work)[0].fingerprint}))
    again = {s.name: s.fingerprint for s in quality.build_v2_stages(args, work)}
    assert {n for n in stages if n != "select-seen" and stages[n].fingerprint != again[n]} == {"t2l-recon",
                                                                                              "eval-seen"}
    # only what the methods need: no LoRAs to train for base and T2L
    quality2, args2, work2 = _fixture(tmp_path / "few", "seen", "base,t2l", SEEN_TASKS)
    assert [s.name for s in quality2.build_v2_stages(args2, work2)] == ["select-seen", "eval-seen"]


def test_seen_split_dry_run_and_stray_adapters(tmp_path, capsys):
    quality, args, work = _fixture(tmp_path, "seen", None, SEEN_TASKS)
    argv = ["--scale", "v2", "--split", "seen", "--library", args.library, "--work", str(work),
            "--t2l-checkpoint", args.t2l_checkpoint]
    assert quality.main(argv + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "expected <= 170 min" in out and "[1/?] select-seen" in out and "cached" in out
    for k, name in enumerate(["lora:_multitask", "lora:copy", "lora:reverse", "lora:upper", "t2l-recon",
                              "eval-seen"], start=2):
        assert f"[{k}/7] {name}:" in out
    assert not (work / "report-seen").exists() and not (work / "lora-library").exists()
    stray = work / "lora-library" / "other"
    stray.mkdir(parents=True)
    (stray / "adapter_config.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"tasks not on the seen side \(other\)"):
        quality.build_v2_stages(args, work)


# -------------------------------------------------------------------------------------------------- selection
def _seen_library(root: Path):
    from text2lora.data.library import TaskLibrary, write_index, write_task_instances
    from text2lora.data.task import Instance, Task

    def gen(n, out=lambda k: f"answer {k}"):
        return [Instance(input=f"question {k}", output=out(k)) for k in range(n)]

    specs = []  # (name, family, origin, instances, split, language, train)
    for origin in ("bigbench", "natural_instructions_v1", "openai_evals"):
        for f in range(3):
            for t in range(2):
                specs.append((f"{origin[:2]}.f{f}.t{t}", f"{origin[:2]}.f{f}", origin, gen(6), "seen", "en", 50))
    specs += [("bi.long", "bi.long", "bigbench", gen(6, lambda k: "a b c d e f"), "seen", "en", 50),
              ("bi.echo", "bi.echo", "bigbench", gen(6, lambda k: f"question {k}"), "seen", "en", 50),
              ("bi.few", "bi.few", "bigbench", gen(3), "seen", "en", 50),
              ("bi.fr", "bi.fr", "bigbench", gen(6), "seen", "fr", 50),
              ("bi.small", "bi.small", "bigbench", gen(6), "seen", "en", 39),
              ("bi.mc6", "bi.mc6", "bigbench", [Instance.choice("q", list("abcdef"), 0)] * 6, "seen", "en", 50),
              ("un.one", "un.one", "bigbench", gen(6), "unseen", "en", 50)]
    tasks = []
    for name, family, origin, instances, split, language, train in specs:
        write_task_instances(root, name, instances, ["test"] * len(instances))
        tasks.append(Task(name=name, source=family, definition=f"Do {name}.", split=split, language=language,
                          origin=origin, metric="multiple_choice" if instances[0].options else "generation",
                          counts={"train": train, "validation": 0, "test": len(instances)}))
    write_index(root, tasks, meta={"seed": 0}, dropped=[])
    return TaskLibrary.load(root)


def test_seen_selection_follows_its_rules(tmp_path):
    from text2lora.eval.benchmark import BenchmarkRules, SeenRules, check_seen, select_benchmark, select_seen

    lib = _seen_library(tmp_path)
    rules = SeenRules(n_instances=4, tasks_per_origin=2)
    seen = select_seen(lib, rules)
    assert seen == select_seen(lib, rules)  # deterministic
    chosen = seen["seen"]
    by_origin = {o: [e for e in chosen if e["origin"] == o] for o in ("bigbench", "natural_instructions_v1",
                                                                      "openai_evals")}
    assert [len(v) for v in by_origin.values()] == [2, 2, 2]  # every source, tasks_per_origin each
    assert len({e["family"] for e in chosen}) == 6 and all(len(e["instances"]) == 4 for e in chosen)
    assert {k: v for k, v in seen["excluded"].items() if k.count(".") == 1} == {
        "bi.echo": "100% of answers copy the input", "bi.few": "3 test instances (< 4)", "bi.fr": "language fr",
        "bi.long": "answers of up to 6 words (> 5)", "bi.mc6": "6 options (> 5)",
        "bi.small": "39 training instances (< 40)"}  # unseen tasks are never candidates
    left = {k: v for k, v in seen["excluded"].items() if k.count(".") == 2}
    assert sum("already has 2 families" in v for v in left.values()) == 6  # the third family of each source
    assert sum(v.startswith("family ") for v in left.values()) == 6  # the other task of each chosen family
    assert set(seen["excluded"]) | {e["name"] for e in chosen} == {t.name for t in lib.seen()}
    # a different seed draws other families (the draw is seeded, not fixed by name order)
    assert any(select_seen(lib, SeenRules(n_instances=4, tasks_per_origin=2, seed=s))["seen"] != chosen
               for s in range(1, 6))
    # disjoint from the unseen sides of the same library
    bench = select_benchmark(lib, BenchmarkRules(n_instances=4))
    unseen = {e["name"] for side in ("test", "validation") for e in bench[side]}
    assert unseen == {"un.one"} and not unseen & {e["name"] for e in chosen}
    assert check_seen(seen, lib) == [e["name"] for e in chosen]


def test_check_seen_refuses_other_instances_and_a_task_no_longer_seen(tmp_path):
    from text2lora.data.library import TaskLibrary, write_index, write_task_instances
    from text2lora.data.task import Instance
    from text2lora.errors import Text2LoraError
    from text2lora.eval.benchmark import SeenRules, check_seen, select_seen

    lib = _seen_library(tmp_path)
    seen = select_seen(lib, SeenRules(n_instances=4, tasks_per_origin=2))
    name = seen["seen"][0]["name"]
    write_task_instances(tmp_path, name, [Instance(input=f"other {k}", output="x") for k in range(6)], ["test"] * 6)
    with pytest.raises(Text2LoraError, match=f"test instances of {name} are not the benchmark's"):
        check_seen(seen, TaskLibrary.load(tmp_path))
    resplit = [t if t.name != seen["seen"][1]["name"] else type(t)(**{**t.to_json(), "split": "unseen"})
               for t in lib.tasks]
    write_index(tmp_path, resplit, meta={}, dropped=[])
    with pytest.raises(Text2LoraError, match="is not a seen task"):
        check_seen({**seen, "seen": seen["seen"][1:]}, TaskLibrary.load(tmp_path))
    with pytest.raises(Text2LoraError, match="not a format-1 seen benchmark"):
        check_seen({**seen, "side": "test"}, lib)


def test_committed_seen_side_meets_issue_16():
    """benchmarks/v2/seen.json as committed: >= 12 seen tasks from >= 12 families, all three sources, 30 scored
    instances each, enough training instances for quality.py's per-task LoRAs, none on an unseen side."""
    from text2lora.eval.benchmark import SeenRules

    quality = _load("quality")
    seen = json.loads(quality.V2_SEEN_FILE.read_text())
    bench = json.loads(quality.V2_BENCHMARK.read_text())
    chosen = seen["seen"]
    assert seen["rules"] == dataclasses.asdict(SeenRules()) and SeenRules().min_train == quality.MIN_TRAIN
    assert len(chosen) >= 12 and len({e["family"] for e in chosen}) >= 12
    assert {e["origin"] for e in chosen} == {"bigbench", "natural_instructions_v1", "openai_evals"}
    assert all(len(e["instances"]) == 30 and e["train"] >= quality.MIN_TRAIN for e in chosen)
    unseen = {e["name"] for side in ("test", "validation") for e in bench[side]} | set(bench["excluded"])
    assert not unseen & {e["name"] for e in chosen}
    assert bench["rules"]["n_instances"] == seen["rules"]["n_instances"]
    assert all(bench["rules"][k] == seen["rules"][k]
               for k in ("max_answer_words", "max_options", "max_copy_share", "language"))


# ----------------------------------------------------------------------------------------------------- claims
def _seen_report(tmp_path: Path, per_instance: dict[str, list[list[float]]]) -> dict[str, str]:
    """claims.md rows ({claim: row}) of a seen-side report whose per-instance scores are given (rows: tasks)."""
    claims = _load("claims")
    n = len(next(iter(per_instance.values())))
    tasks = [{"name": f"s{i}", "split": "seen"} for i in range(n)]
    records, per_task, avg = [], {}, {}
    for label, rows in per_instance.items():
        for i, values in enumerate(rows):
            records.append({"label": label, "task": f"s{i}", "scores": {"per_instance_score": values}})
            per_task.setdefault(label, {})[f"s{i}"] = {"score": sum(values) / len(values)}
        avg[label] = {"seen": {"score": sum(per_task[label][t["name"]]["score"] for t in tasks) / n}}
    (tmp_path / "results.json").write_text(json.dumps({"averages": avg, "per_task": per_task, "tasks": tasks,
                                                       "records": records, "columns": list(per_instance)}))
    return {line.split(" | ")[0].lstrip("| "): line for line in claims.check(tmp_path).splitlines()
            if line.startswith("| ") and "verdict" not in line}


def test_seen_claims(tmp_path):
    claims = _load("claims")
    lora = [[1.0] * 5 + [0.0] * 5, [1.0] * 8 + [0.0] * 2]  # 50 and 80: average 65
    rows = _seen_report(tmp_path, {
        "base": [[0.0] * 10] * 2, "multitask-lora": [[1.0] * 3 + [0.0] * 7] * 2, "task-lora": lora,
        "t2l-recon[train]": [[1.0] * 5 + [0.0] * 5, [1.0] * 8 + [0.0] * 2],  # the LoRAs' answers: 100%
        "t2l[train]": [[1.0] * 4 + [0.0] * 6, [1.0] * 8 + [0.0] * 2]})  # 60: 92.3% of the LoRAs
    assert set(rows) == {c.text for c in claims.V2_SEEN_CLAIMS}
    own = rows["seen: T2L (own description) >= the per-task LoRAs' average"]
    assert "| DOES NOT HOLD |" in own and "t2l[train] 60.0 vs task-lora 65.0: -5.0" in own
    assert "better on 0 of 2 tasks" in own and "95% CI [" in own
    ratio = rows["seen: T2L (own description) reaches >= 98% of the per-task LoRAs (the paper: ~98%)"]
    assert "| DOES NOT HOLD |" in ratio and "92.3% (needs >= 98%)" in ratio
    recon = rows["seen: T2L-recon reaches >= 98% of the per-task LoRAs"]
    # the same answers as the LoRAs: 100%, and the interval of recon - 0.98 x LoRA is 0.02 x the LoRAs' scores
    assert "| holds |" in recon and "100.0% (needs >= 98%)" in recon
    assert "95% CI of t2l-recon[train] - 0.98 x task-lora: [+0.9, +1.7] over instances" in recon
    assert "| holds |" in rows["seen: T2L (own description) >= multi-task LoRA"]  # 60 vs 30
    # an unseen-side report with the same columns keeps the unseen bar
    results = json.loads((tmp_path / "results.json").read_text())
    assert claims.claims_for(results) is claims.V2_SEEN_CLAIMS
    results["tasks"][0]["split"] = "unseen"
    assert claims.claims_for(results) is claims.V2_CLAIMS
    assert claims.claims_for({"columns": ["t2l-sft[train]"], "tasks": []}) is claims.CLAIMS


def test_examples_claims_join_the_unseen_bar_when_the_report_scored_shots(tmp_path):
    """Issue 15's claims: t2l+shots against icl3 (+3, interval), against description-only T2L (+3), and against
    the shuffled-outputs control (interval); with the prompt tokens each request saves against icl3."""
    claims = _load("claims")
    n_tasks, n = 6, 20
    scores = {"icl3": 0.30, "t2l[train]": 0.35, "t2l+shots[train]": 0.50, "t2l+shuffled-shots[train]": 0.20}
    tasks = [{"name": f"u{i}", "split": "unseen"} for i in range(n_tasks)]
    records, per_task, avg = [], {}, {}
    for label, share in scores.items():
        for t in tasks:
            values = [1.0] * round(share * n) + [0.0] * (n - round(share * n))
            records.append({"label": label, "task": t["name"], "scores": {"per_instance_score": values}})
            per_task.setdefault(label, {})[t["name"]] = {"score": share}
        avg[label] = {"unseen": {"score": share}}
    results = {"averages": avg, "per_task": per_task, "tasks": tasks, "records": records, "columns": list(scores),
               "prompt_tokens": {"icl3": {"mean": 300.0, "requests": 120},
                                 "t2l+shots[train]": {"mean": 75.0, "requests": 120}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    text = claims.check(tmp_path)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()
            if line.startswith("| ") and "verdict" not in line}
    assert {c.text for c in claims.V2_EXAMPLES_CLAIMS} <= set(rows)
    assert "| holds |" in rows["T2L with 3 examples >= 3-shot ICL + 3, interval above 0"]  # +20
    assert "| holds |" in rows["T2L with 3 examples >= T2L description-only + 3"]  # +15
    shuffled = rows["T2L uses the examples: real ones > the same with shuffled outputs, interval above 0"]
    assert "| holds |" in shuffled and "+30.0" in shuffled
    assert "`t2l+shots` 75.0 against `icl3` 300.0, 225.0 fewer (75% of icl3's prompt saved)" in text

    # the shuffled examples as good as the real ones: the model does not use them
    for t in tasks:
        per_task["t2l+shuffled-shots[train]"][t["name"]] = {"score": 0.5}
    avg["t2l+shuffled-shots[train]"] = {"unseen": {"score": 0.5}}
    for r in records:
        if r["label"] == "t2l+shuffled-shots[train]":
            r["scores"]["per_instance_score"] = [1.0] * 10 + [0.0] * 10
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert "| DOES NOT HOLD |" in next(line for line in claims.check(tmp_path).splitlines()
                                       if line.startswith("| T2L uses the examples"))
    # no shots column: the unseen bar alone
    results["columns"] = ["icl3", "t2l[train]"]
    assert claims.claims_for(results) is claims.V2_CLAIMS


def test_a_longer_multitask_baseline_is_validated_often_enough_to_stop_early(tmp_path):
    """`--multitask-steps 8000` (issue 16's baseline trained until its validation loss stops improving): validated
    and saved every 250 steps, not every 1,000, so early stopping (3 evaluations) can act; 800 keeps every 100."""
    quality, args, work = _fixture(tmp_path, "test", None, ["first"])
    for steps, every in ((None, 100), (8000, 250), (1200, 150)):
        args.multitask_steps = steps
        stage = {s.name: s for s in quality.build_v2_stages(args, work)}["lora:_multitask"]
        loop = stage.inputs["config"]["loop"]
        assert (loop["steps"], loop["eval_every"], loop["save_every"]) == (steps or 800, every, every)
        assert loop["early_stop_patience"] == 3
