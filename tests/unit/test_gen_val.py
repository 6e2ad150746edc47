"""Generation-based validation of SFT (train/gen_val.py): gen_* metrics beside the losses, the base model scored
once, a per-task and per-family gen_val.jsonl, best/ chosen by the generation score on request, and runs saved
before gen_val existed still resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.tiny import build_chat_model, build_library, sft_config_dict
from text2lora.errors import Text2LoraError
from text2lora.train.config import build_config, config_to_dict
from text2lora.train.gen_val import read_gen_val
from text2lora.train.loop import check_resume_config, config_fingerprint, train


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen-val-world")
    return build_chat_model(root / "model"), build_library(root / "library")


def sft_cfg(world, gen_val: dict | None, **loop):
    model_dir, library = world
    data = sft_config_dict(model_dir, library, **loop)
    if gen_val is not None:
        data["gen_val"] = {"tasks": "all", "instances": 4, "max_new_tokens": 4, **gen_val}
    return build_config("sft", data)


def recipe_for(cfg, run_dir: Path | None = None):
    from text2lora.train.sft import SFTRecipe

    return SFTRecipe(cfg, run_dir=run_dir)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


class EchoGeneration:
    """Stands in for greedy decoding: with an adapter and while ``echoing``, every answer is its prompt's input
    (spaces around it); otherwise a fixed string. Counts the calls made without an adapter."""

    def __init__(self, recipe) -> None:
        self.inputs = {tuple(p): x for r in recipe.gen_val.requests for p, x in zip(r.prompt_ids, r.inputs)}
        self.echoing = True
        self.base_calls = 0

    def __call__(self, model, tokenizer, prompts, *, lora=None, max_new_tokens=64, batch_size=16):
        if lora is None:
            self.base_calls += 1
            return ["zzz" for _ in prompts]
        assert lora.n == len(prompts)
        return [f"  {self.inputs[tuple(p)]} " if self.echoing else "zzz" for p in prompts]  # prompts: token ids


def echo(monkeypatch, recipe) -> EchoGeneration:
    fake = EchoGeneration(recipe)
    monkeypatch.setattr("text2lora.generation.generate_texts", fake)
    return fake


def test_gen_val_metrics_are_logged_at_its_evaluations_with_a_family_breakdown(world, tmp_path):
    cfg = sft_cfg(world, {"every": 2}, steps=12, eval_every=4, save_every=12)
    recipe = recipe_for(cfg, tmp_path / "run")
    train(recipe, cfg.loop, tmp_path / "run", config_to_dict(cfg), progress=False)
    rows = metrics(tmp_path / "run")
    assert [r["step"] for r in rows if "val_instances" in r] == [0, 4, 8, 12]
    gen = [r for r in rows if "gen_score" in r]
    assert [r["step"] for r in gen] == [0, 8, 12]  # every 2nd validation, and the last
    for r in gen:
        for key in ("gen_score", "gen_copy_rate", "gen_base_score", "gen_base_copy_rate"):
            assert 0.0 <= r[key] <= 1.0
        assert "gen_error" not in r  # select_by loss: the losses pick best/
    assert len({(r["gen_base_score"], r["gen_base_copy_rate"]) for r in gen}) == 1
    assert recipe.gen_val.base_runs == 1 and recipe.primary_metric == "val_instances"
    detail = read_gen_val(tmp_path / "run")
    assert [(r["step"], r["model"]) for r in detail] == [(0, "base"), (0, "t2l"), (8, "t2l"), (12, "t2l")]
    last = detail[-1]
    assert set(last["tasks"]) == {"copy", "first", "reverse", "upper"}
    assert set(last["families"]) == {"copy", "first", "reverse", "upper"}  # the fixture: one family per task
    for name, task in last["tasks"].items():
        assert task["headline"] == "strict_exact_match" and len(task["predictions"]) == task["n"] == 4
        assert last["families"][task["family"]]["copy_rate"] == task["copy_rate"]
    assert last["score"] == pytest.approx(gen[-1]["gen_score"])
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000  # the gen_* curves on a second axis


def test_copy_rate_counts_echoed_answers_and_the_base_model_runs_once(world, monkeypatch):
    cfg = sft_cfg(world, {})
    recipe = recipe_for(cfg)
    fake = echo(monkeypatch, recipe)
    first = recipe.evaluate(recipe.hypernet, step=0)
    # every answer repeats its input: copied everywhere, right only on the copy task (no word is a palindrome)
    assert first["gen_copy_rate"] == 1.0 and first["gen_score"] == 0.25
    assert first["gen_base_copy_rate"] == 0.0 and first["gen_base_score"] == 0.0
    calls = fake.base_calls
    assert calls >= 1
    fake.echoing = False
    later = recipe.evaluate(recipe.hypernet, step=6)
    assert later["gen_score"] == 0.0 and later["gen_copy_rate"] == 0.0
    assert fake.base_calls == calls and recipe.gen_val.base_runs == 1
    assert later["gen_base_score"] == first["gen_base_score"]
    assert recipe.hypernet.training  # called in train mode, left in train mode


def test_select_by_gen_score_exports_the_best_generation_score(world, tmp_path, monkeypatch):
    cfg = sft_cfg(world, {"select_by": "gen_score"}, steps=12, eval_every=6, save_every=6)
    recipe = recipe_for(cfg, tmp_path / "run")
    assert recipe.primary_metric == "gen_error"
    fake = echo(monkeypatch, recipe)
    evaluate = recipe.gen_val.evaluate

    def echo_at_step_6(model, hypernet, make_lora, step):  # the copy task right at step 6 only
        fake.echoing = step == 6
        return evaluate(model, hypernet, make_lora, step)

    monkeypatch.setattr(recipe.gen_val, "evaluate", echo_at_step_6)
    result = train(recipe, cfg.loop, tmp_path / "run", config_to_dict(cfg), progress=False)
    gen = {r["step"]: r for r in metrics(tmp_path / "run") if "gen_error" in r}
    assert {s: r["gen_error"] for s, r in gen.items()} == {0: 1.0, 6: 0.75, 12: 1.0}
    assert result.best_step == 6 and result.best == 0.75
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["primary_metric"] == "gen_error" and summary["best_step"] == 6
    best = load_file(str(tmp_path / "run" / "best" / "hypernet.safetensors"))
    at_6 = load_file(str(tmp_path / "run" / "ckpt-0000006" / "trainable.safetensors"))
    final = load_file(str(tmp_path / "run" / "final" / "hypernet.safetensors"))
    assert all((best[k] == at_6[k]).all() for k in best)
    assert any(not (best[k] == final[k]).all() for k in best)


def test_a_run_saved_before_gen_val_existed_resumes(world, tmp_path):
    cfg = sft_cfg(world, None, steps=12, eval_every=4, save_every=6)
    old = config_to_dict(cfg)
    del old["gen_val"]  # what a run saved before gen_val existed holds
    run = tmp_path / "run"
    train(recipe_for(cfg, run), cfg.loop, run, old, progress=False, stop_after=8)
    assert json.loads((run / "ckpt-0000006" / "config.json").read_text()).get("gen_val", "absent") == "absent"
    # its own config today (gen_val: null) and one that reports gen_val metrics resume it; choosing best/ by them
    # would change what the run computes: refused
    assert check_resume_config(run, config_to_dict(cfg)) is not None
    with_gen = sft_cfg(world, {}, steps=12, eval_every=4, save_every=6)
    assert config_fingerprint(config_to_dict(with_gen)) == config_fingerprint(old)
    picky = sft_cfg(world, {"select_by": "gen_score"}, steps=12, eval_every=4, save_every=6)
    with pytest.raises(Text2LoraError, match="differs in: gen_val"):
        check_resume_config(run, config_to_dict(picky))
    result = train(recipe_for(with_gen, run), with_gen.loop, run, config_to_dict(with_gen), resume=True,
                   progress=False)
    assert result.steps == 12
    rows = metrics(run)
    assert [r["step"] for r in rows if "val_instances" in r] == [0, 4, 8, 12]
    assert [r["step"] for r in rows if "gen_score" in r] == [8, 12]  # reported from the resume on
    assert [(r["step"], r["model"]) for r in read_gen_val(run)] == [(8, "base"), (8, "t2l"), (12, "t2l")]


def test_a_resumed_run_rewrites_the_gen_val_rows_after_its_checkpoint(world, tmp_path):
    cfg = sft_cfg(world, {}, steps=12, eval_every=4, save_every=6)
    run = tmp_path / "run"
    train(recipe_for(cfg, run), cfg.loop, run, config_to_dict(cfg), progress=False, stop_after=8)
    assert [r["step"] for r in read_gen_val(run) if r["model"] == "t2l"] == [0, 4, 8]
    with open(run / "gen_val.jsonl", "a") as f:
        f.write('{"step": 9, "model": "t2l", "cut short')  # a line a kill cut short
    train(recipe_for(cfg, run), cfg.loop, run, config_to_dict(cfg), resume=True, progress=False)
    rows = read_gen_val(run)
    assert [r["step"] for r in rows if r["model"] == "t2l"] == [0, 4, 8, 12]
    assert [r["step"] for r in rows if r["model"] == "base"] == [0, 8]


def test_gen_val_tasks_from_a_benchmark(world, tmp_path):
    from text2lora.data.library import TaskLibrary
    from text2lora.eval.benchmark import BenchmarkRules, select_benchmark

    _, library = world
    bench = select_benchmark(TaskLibrary.load(library), BenchmarkRules(n_instances=4, language="unknown"))
    assert [t["name"] for t in bench["test"]] == ["first"] and bench["validation"] == []
    path = tmp_path / "benchmark.json"
    path.write_text(json.dumps(bench))
    recipe = recipe_for(sft_cfg(world, {"benchmark": str(path), "split": "test", "instances": 3}))
    assert [t.name for t in recipe.gen_val.tasks] == ["first"]
    assert [len(r.prompts) for r in recipe.gen_val.requests] == [3]
    with pytest.raises(Text2LoraError, match="no validation tasks"):
        recipe_for(sft_cfg(world, {"benchmark": str(path)}))
    bench["test"][0]["instances"][0] = "000000000000"
    path.write_text(json.dumps(bench))
    with pytest.raises(Text2LoraError, match="not the benchmark's"):
        recipe_for(sft_cfg(world, {"benchmark": str(path), "split": "test"}))
    with pytest.raises(Text2LoraError, match="no benchmark file"):
        recipe_for(sft_cfg(world, {"benchmark": str(tmp_path / "missing.json")}))


@pytest.mark.parametrize("gen_val, message", [
    ({"select_by": "accuracy"}, "gen_val.select_by must be one of loss, gen_score"),
    ({"select_by": "gen_score", "every": 2}, "needs gen_val.every 1"),
    ({"select_by": "gen_score", "benchmark": "b.json", "split": "test"}, "test side"),
    ({"split": "train"}, "gen_val.split must be validation or test"),
    ({"instances": 0}, "gen_val.instances must be >= 1"),
    ({"max_tasks": 0}, "gen_val.max_tasks must be >= 1"),
    ({"every": "often"}, "every"),
    ({"shot": 3}, "unknown key 'shot'"),
    ({"shots": -1}, "gen_val.shots must be in 0..64"),
])
def test_bad_gen_val_settings_are_one_line_errors(world, gen_val, message):
    with pytest.raises(Text2LoraError, match=message):
        sft_cfg(world, gen_val)


def test_gen_val_is_off_by_default_and_max_tasks_keeps_the_first_by_name(world):
    assert build_config("sft", {}).gen_val is None
    recipe = recipe_for(sft_cfg(world, {"max_tasks": 2}))
    assert [t.name for t in recipe.gen_val.tasks] == ["copy", "first"]
    assert recipe_for(sft_cfg(world, None)).gen_val is None


def test_copy_diagnosis_counts_copies_per_family(world, tmp_path, capsys):
    from tests.scripts import load_script

    script = load_script("benchmarks/copy_diagnosis.py")
    _, library = world
    assert script.main(["--library", str(library), "--tasks", "all", "--json", str(tmp_path / "out.json")]) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    tasks = {t["task"]: t for t in result["tasks"]}
    assert {k: tasks["copy"][k] for k in script.COLUMNS} == {"copy": 1.0, "near": 1.0, "near_any_case": 1.0,
                                                            "overlap": 1.0}
    # upper-casing is no copy case-sensitively, but an echo scores on it with a lower-casing metric
    assert (tasks["upper"]["copy"], tasks["upper"]["near"], tasks["upper"]["near_any_case"]) == (0.0, 0.0, 1.0)
    assert tasks["reverse"]["near_any_case"] == tasks["first"]["near_any_case"] == 0.0
    overall = result["overall"]
    assert (overall["tasks"], overall["instances"], overall["copy"], overall["near_any_case"]) == (4, 64, 0.25, 0.5)
    assert result["families"]["copy"]["tasks_mostly_near"] == 1
    table = capsys.readouterr().out
    assert "| copy | 1 | 16 | 100.0 | 100.0 | 100.0 | 100.0 | 1 (1) |" in table and "| reverse |" not in table


def test_train_sft_cli_writes_gen_val_beside_the_metrics(world, tmp_path):
    import yaml

    from text2lora.cli import main

    model_dir, library = world
    data = sft_config_dict(model_dir, library, steps=4, eval_every=2, save_every=4)
    data["gen_val"] = {"tasks": "unseen", "instances": 2, "max_new_tokens": 2, "select_by": "gen_score"}
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(data))
    assert main(["train", "sft", "--config", str(tmp_path / "sft.yaml"), "--out", str(tmp_path / "run")]) == 0
    assert [(r["step"], r["model"]) for r in read_gen_val(tmp_path / "run")] == [(0, "base"), (0, "t2l"), (2, "t2l"),
                                                                                 (4, "t2l")]
    assert set(read_gen_val(tmp_path / "run")[-1]["tasks"]) == {"first"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["primary_metric"] == "gen_error" and "gen_error" in summary["final"]
