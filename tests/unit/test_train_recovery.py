"""Reproducible LoRA baselines and runs that recover: one seed gives bit-identical adapters, a run killed before
its first checkpoint resumes (from scratch) to the weights of an uninterrupted run, leftovers of kills are
removed (ours only), and a damaged checkpoint is one clear error."""

import json

import pytest
import torch
import yaml

from tests.tiny import build_chat_model, build_library
from text2lora.cli import main
from text2lora.paths import sha256_file


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("recovery-world")
    return build_chat_model(root / "model"), build_library(root / "library")


def lora_config(model_dir, library, **loop) -> dict:
    return {"base_model": str(model_dir), "rank": 4,
            "data": {"library": str(library), "tasks_per_batch": 2, "max_prompt_tokens": 32, "max_output_tokens": 8},
            "loop": {"steps": 6, "lr": 1e-2, "eval_every": 3, "save_every": 3, "log_every": 1, "threads": 1,
                     "early_stop_patience": None, **loop}}


def train_lora(tmp_path, name, cfg, *extra) -> int:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return main(["train", "lora", "--task", "reverse", "--config", str(path), "--out", str(tmp_path / name), *extra])


def adapter_sha(lib) -> str:
    return sha256_file(lib / "reverse" / "adapter_model.safetensors")


def test_one_seed_gives_bit_identical_adapters_and_leaves_the_global_rng_alone(world, tmp_path):
    from text2lora.train.baselines import peft_model_for
    from text2lora.train.config import build_config
    from tests.tiny import tiny_llama

    model_dir, library = world
    assert train_lora(tmp_path, "a", lora_config(model_dir, library)) == 0
    assert train_lora(tmp_path, "b", lora_config(model_dir, library)) == 0
    assert train_lora(tmp_path, "c", lora_config(model_dir, library, seed=1)) == 0
    assert adapter_sha(tmp_path / "a") == adapter_sha(tmp_path / "b")
    assert adapter_sha(tmp_path / "a") != adapter_sha(tmp_path / "c")  # the seed is what decides

    cfg = build_config("lora", {"targets": ["q_proj"], "loop": {"seed": 3}})
    model = tiny_llama()  # seeds the global generator itself
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = peft_model_for(model, cfg)
    assert torch.equal(torch.get_rng_state(), before)
    a = {n: p for n, p in first.named_parameters() if "lora_A" in n}
    b = {n: p for n, p in peft_model_for(tiny_llama(), cfg).named_parameters() if "lora_A" in n}
    assert a and all(torch.equal(a[n], b[n]) for n in a)


def test_resume_before_the_first_checkpoint_starts_afresh_and_matches_an_uninterrupted_run(world, tmp_path, caplog):
    from text2lora.data.library import TaskLibrary
    from text2lora.train.baselines import LoraRecipe
    from text2lora.train.config import build_config
    from text2lora.train.loop import run_config, train

    model_dir, library = world
    data = lora_config(model_dir, library)
    assert train_lora(tmp_path, "straight", data) == 0

    # the same job, killed after 2 of 6 steps (its first checkpoint is at step 3)
    cfg = build_config("lora", data)
    run = tmp_path / "killed" / ".runs" / "reverse"
    recipe = LoraRecipe(cfg, ["reverse"], library=TaskLibrary.load(str(library)))
    train(recipe, cfg.loop, run, run_config(cfg, cfg.data.library, uses_descriptions=False, tasks=["reverse"]),
          progress=False, stop_after=2)
    assert not list(run.glob("ckpt-*")) and (run / "metrics.jsonl").is_file()
    # what kills leave: a checkpoint cut short while written or pruned, an install cut short; and a user's file
    (run / ".tmp-ckpt-0000003-abcd_123").mkdir()
    (run / ".tmp-ckpt-0000003-abcd_123" / "trainable.safetensors").write_bytes(b"\0" * 64)
    (run / "ckpt-0000001").mkdir()
    (run / ".tmp-summary.json-q1w2e3r4").write_text("{")
    (tmp_path / "killed" / ".tmp-reverse-zzzzzzzz").mkdir()
    (run / ".tmp-notes").write_text("mine")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 2, "lo')  # killed mid-line
    with caplog.at_level("WARNING"):
        assert train_lora(tmp_path, "killed", data, "--resume") == 0
    assert "no checkpoint in" in caplog.text and "starting the run from its config" in caplog.text
    assert adapter_sha(tmp_path / "killed") == adapter_sha(tmp_path / "straight")
    left = sorted(p.name for p in run.iterdir() if p.name.startswith("."))
    assert left == [".tmp-notes"]  # not ours: kept
    assert not (run / "ckpt-0000001").exists()
    assert [p.name for p in (tmp_path / "killed").iterdir() if p.name.startswith(".tmp")] == []
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[0] == 0


@pytest.mark.parametrize("damage, named", [
    (lambda c: (c / "trainable.safetensors").write_bytes((c / "trainable.safetensors").read_bytes()[:100]),
     "trainable.safetensors: unreadable"),
    (lambda c: (c / "rng.json").write_text('{"python": [3, [1, 2], null]}'), "rng.json: ValueError"),
    (lambda c: (c / "rng.json").write_text('{"python": 7}'), "rng.json: TypeError"),
    (lambda c: (c / "optimizer.json").unlink(), "optimizer.json: missing"),
    (lambda c: (c / "trainer.json").write_text('{"step": "x"}'), "trainer.json: no step count"),
])
def test_a_damaged_checkpoint_is_one_line_on_resume(world, tmp_path, capsys, damage, named):
    model_dir, library = world
    data = lora_config(model_dir, library, steps=3)
    assert train_lora(tmp_path, "run", data) == 0
    ckpt = tmp_path / "run" / ".runs" / "reverse" / "ckpt-0000003"
    damage(ckpt)
    capsys.readouterr()
    assert train_lora(tmp_path, "run", data, "--resume") == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("text2lora:")]
    assert len(err) == 1 and named in err[0] and "delete it to resume" in err[0], err


def test_a_run_saved_before_a_config_key_existed_keeps_its_fingerprint():
    """Every key added to the config after runs were saved (loop._ADDED_LATER), at its default, leaves the
    fingerprint as it was without the key, so those runs still resume; another value changes it."""
    from text2lora.train.config import build_config, config_to_dict
    from text2lora.train.loop import _ADDED_LATER, config_fingerprint

    full = config_to_dict(build_config("sft", {"gen_val": {"tasks": "unseen", "select_by": "gen_score"}}))
    for section, defaults in _ADDED_LATER.items():
        for key, default in defaults.items():
            holder = full if section == "" else full[section]
            assert holder[key] == default, (section, key)  # the recorded default is the config's default
            old = {k: (dict(v) if isinstance(v, dict) else v) for k, v in full.items()}
            (old if section == "" else old[section]).pop(key)
            assert config_fingerprint(old) == config_fingerprint(full), (section, key)
            changed = {k: (dict(v) if isinstance(v, dict) else v) for k, v in full.items()}
            (changed if section == "" else changed[section])[key] = "other"
            assert config_fingerprint(changed) != config_fingerprint(full), (section, key)


@pytest.mark.parametrize("key, value, same", [("save_every", 7, True), ("keep_last", 9, True), ("log_every", 3, True),
                                              ("threads", 1, True), ("eval_every", 7, False), ("lr", 0.5, False)])
def test_how_often_a_run_saves_and_logs_may_change_at_a_resume(tmp_path, key, value, same):
    """A run may resume saving more often (to lose less at a kill) or logging differently; what decides the
    computation or which steps can become best/ (eval_every) may not."""
    from text2lora.errors import Text2LoraError
    from text2lora.train.config import build_config, config_to_dict
    from text2lora.train.loop import check_resume_config

    saved = config_to_dict(build_config("sft", {}))
    (tmp_path / "ckpt-0000010").mkdir()
    (tmp_path / "ckpt-0000010" / "config.json").write_text(json.dumps(saved))
    (tmp_path / "ckpt-0000010" / "trainer.json").write_text("{}")
    now = {**saved, "loop": {**saved["loop"], key: value}}
    assert saved["loop"][key] != value
    if same:
        assert check_resume_config(tmp_path, now) == tmp_path / "ckpt-0000010"
    else:
        with pytest.raises(Text2LoraError, match=f"differs in: loop"):
            check_resume_config(tmp_path, now)
