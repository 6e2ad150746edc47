"""Training on tiny models: SFT, reconstruction and LoRA baselines learn; checkpoints resume exactly; bad
configs and directories fail with clear errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.tiny import build_chat_model, build_library, sft_config_dict
from text2lora.cli import main
from text2lora.config import LoraConfig
from text2lora.errors import Text2LoraError
from text2lora.train.config import build_config, config_to_dict, load_config
from text2lora.train.loop import train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-world")
    return build_chat_model(root / "model"), build_library(root / "library")


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sft_lowers_the_loss_and_exports_a_checkpoint(world, tmp_path):
    from text2lora.api import T2L
    from text2lora.train.sft import SFTRecipe

    model_dir, library = world
    cfg = build_config("sft", sft_config_dict(model_dir, library, steps=30, eval_every=15, save_every=15))
    recipe = SFTRecipe(cfg)
    first = recipe.evaluate(recipe.hypernet)
    result = train(recipe, cfg.loop, tmp_path / "run", config_to_dict(cfg), progress=False)
    rows = metrics(tmp_path / "run")
    evals = [r for r in rows if "val_instances" in r]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 30
    assert evals[-1]["val_instances"] < 0.8 * first["val_instances"]
    assert evals[-1]["val_heldout"] < evals[0]["val_heldout"]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    t2l = T2L.load(tmp_path / "run" / "best")
    assert t2l.meta.trained and result.best_step in (15, 30)
    assert t2l.generate(["Repeat the input word exactly."]).n == 1


def test_reconstruction_approaches_the_library(world, tmp_path):
    from text2lora.lora import LoraWeights, save_peft_adapter
    from text2lora.models.targets import discover_targets
    from text2lora.train.recon import ReconRecipe

    model_dir, library = world
    layout = discover_targets(str(model_dir), ("q_proj", "v_proj"))
    g = torch.Generator().manual_seed(0)
    for task in ("copy", "reverse", "upper"):
        factors = {s.name: (torch.randn(1, layout.n_layers, 8, s.d_in, generator=g) * 0.2,
                            torch.randn(1, layout.n_layers, s.d_out, 8, generator=g) * 0.2) for s in layout.targets}
        save_peft_adapter(LoraWeights(factors, layout, LoraConfig(rank=8, alpha=16.0)), tmp_path / "loras" / task, base_model_name_or_path="x")
    data = sft_config_dict(model_dir, library, steps=120, lr=5e-3, eval_every=60, save_every=60)
    data.pop("data")
    cfg = build_config("recon", {**data, "data": {"library": str(library), "tasks_per_batch": 3}})
    recipe = ReconRecipe(cfg, tmp_path / "loras")
    train(recipe, cfg.loop, tmp_path / "run", config_to_dict(cfg), progress=False)
    evals = [r for r in metrics(tmp_path / "run") if "train_recon" in r]
    assert evals[-1]["train_recon"] < 0.5 * evals[0]["train_recon"]
    assert evals[-1]["train_dw_rel"] < evals[0]["train_dw_rel"]


def test_oracle_lora_learns_a_task_and_installs_a_peft_adapter(world, tmp_path, capsys):
    model_dir, library = world
    cfg = {"base_model": str(model_dir), "data": {"library": str(library), "tasks_per_batch": 4, "max_prompt_tokens": 64,
                                                  "max_output_tokens": 8},
           "loop": {"steps": 30, "lr": 1e-2, "eval_every": 10, "save_every": 10, "log_every": 1, "num_threads": 1}}
    path = write_config(tmp_path / "lora.yaml", cfg)
    assert main(["train", "lora", "--task", "reverse", "--config", str(path), "--out", str(tmp_path / "lib")]) == 0
    adapter = tmp_path / "lib" / "reverse"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8
    evals = [r for r in metrics(tmp_path / "lib" / ".runs" / "reverse") if "val_loss" in r]
    assert min(e["val_loss"] for e in evals[1:]) < evals[0]["val_loss"]


def test_killed_and_resumed_run_matches_an_uninterrupted_one(world, tmp_path):
    model_dir, library = world
    cfg = write_config(tmp_path / "sft.yaml", sft_config_dict(model_dir, library, steps=12, save_every=4))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "text2lora", "train", "sft", "--config", str(cfg)]
    subprocess.run(cmd + ["--out", str(tmp_path / "straight")], check=True, env=env, capture_output=True, timeout=300)

    proc = subprocess.Popen(cmd + ["--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (tmp_path / "killed" / "ckpt-0000004" / "trainer.json").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "final").exists()
    subprocess.run(cmd + ["--out", str(tmp_path / "killed"), "--resume"], check=True, env=env, capture_output=True,
                   timeout=300)
    a = load_file(str(tmp_path / "straight" / "final" / "hypernet.safetensors"))
    b = load_file(str(tmp_path / "killed" / "final" / "hypernet.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_cpu_processes_with_torchrun(world, tmp_path):
    model_dir, library = world
    cfg = write_config(tmp_path / "sft.yaml", sft_config_dict(model_dir, library, steps=4, save_every=4, eval_every=4))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "text2lora", "train", "sft", "--config", str(cfg), "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in (tmp_path / "ddp").glob("ckpt-*")] == ["ckpt-0000004"]
    assert (tmp_path / "ddp" / "final" / "hypernet.safetensors").is_file()


def test_shipped_configs_load():
    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert len(configs) >= 6
    kinds = set()
    for path in configs:
        kind = yaml.safe_load(path.read_text())["recipe"]
        cfg = load_config(kind, path)
        kinds.add(kind)
        assert cfg.loop.steps > 0
    assert kinds == {"sft", "lora", "recon"}


@pytest.mark.parametrize("data, pattern", [
    ({"loop": {"stpes": 3}}, "unknown key 'stpes'"),
    ({"loop": {"lr": "fast"}}, "sft.loop.lr must be float, got str 'fast'"),
    ({"hypernet": {"variant": "XL"}}, "unknown variant"),
    ({"bogus": 1}, "unknown key 'bogus'"),
    ({"data": {"tasks_per_batch": 0}}, "data.tasks_per_batch must be >= 1"),
    ({"targets": "q_proj"}, "targets must be a list"),
])
def test_bad_configs_name_the_key(data, pattern):
    with pytest.raises(Text2LoraError, match=pattern):
        build_config("sft", data)


def test_yaml_exponent_floats_are_numbers():
    # PyYAML reads `lr: 3e-4` (no dot) as the string "3e-4"; a user means the number
    data = yaml.safe_load("loop: {lr: 3e-4}")
    assert data["loop"]["lr"] == "3e-4"
    assert build_config("sft", data).loop.lr == pytest.approx(3e-4)
    with pytest.raises(Text2LoraError, match="must be float, got str 'nan'"):
        build_config("sft", {"loop": {"lr": "nan"}})


def test_cli_bad_inputs(world, tmp_path, capsys):
    model_dir, library = world
    bad = tmp_path / "bad.yaml"
    bad.write_text("loop: [1, 2\n")
    assert main(["train", "sft", "--config", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["train", "sft", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["train", "lora", "--config", str(write_config(tmp_path / "l.yaml", {"data": {"library": str(library)}}))]) == 2
    assert "--task NAME" in capsys.readouterr().err

    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = write_config(tmp_path / "sft.yaml", sft_config_dict(model_dir, library, steps=2))
    assert main(["train", "sft", "--config", str(cfg), "--out", str(blocker / "run")]) == 2
    assert "cannot create output directory" in capsys.readouterr().err
    assert blocker.read_text() == "x"


def test_resume_with_another_config_is_refused(world, tmp_path, capsys):
    model_dir, library = world
    cfg = write_config(tmp_path / "a.yaml", sft_config_dict(model_dir, library, steps=4, save_every=2, eval_every=4))
    assert main(["train", "sft", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    other = write_config(tmp_path / "b.yaml", sft_config_dict(model_dir, library, steps=4, save_every=2, lr=1e-2))
    assert main(["train", "sft", "--config", str(other), "--out", str(tmp_path / "run"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "another config" in err and "loop" in err
    # threads are an execution detail: a resume may change them
    assert main(["train", "sft", "--config", str(cfg), "--out", str(tmp_path / "run"), "--resume",
                 "--set", "loop.threads=2"]) == 0
    capsys.readouterr()
    assert main(["train", "sft", "--config", str(cfg), "--out", str(tmp_path / "run"), "--resume",
                 "--set", "loop.num_threads=1"]) == 0  # the old name still reads
    capsys.readouterr()
    # and a fresh run into a used directory is refused rather than mixing two runs
    assert main(["train", "sft", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "already holds a training run" in capsys.readouterr().err


def test_resume_on_a_changed_library_is_refused(world, tmp_path, capsys):
    import shutil

    model_dir, library = world
    own = shutil.copytree(library, tmp_path / "library")
    cfg = write_config(tmp_path / "a.yaml", sft_config_dict(model_dir, own, steps=4, save_every=2, eval_every=4))
    assert main(["train", "sft", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    # the same library under another path is the same data: resuming from it is fine
    moved = shutil.copytree(own, tmp_path / "moved")
    cfg_moved = write_config(tmp_path / "b.yaml", sft_config_dict(model_dir, moved, steps=4, save_every=2, eval_every=4))
    assert main(["train", "sft", "--config", str(cfg_moved), "--out", str(tmp_path / "run"), "--resume"]) == 0
    index = json.loads((own / "index.json").read_text())
    index["tasks"][0]["descriptions"].append("Repeat the word you are given.")
    (own / "index.json").write_text(json.dumps(index))
    capsys.readouterr()
    assert main(["train", "sft", "--config", str(cfg), "--out", str(tmp_path / "run"), "--resume"]) == 2
    assert "library_index_sha256" in capsys.readouterr().err


def test_the_lora_fingerprint_ignores_new_descriptions_but_not_new_instances(world, tmp_path, capsys):
    from text2lora.data.library import library_fingerprint

    import shutil

    model_dir, library = world
    own = shutil.copytree(library, tmp_path / "library")
    before = library_fingerprint(own, with_descriptions=False), library_fingerprint(own)
    index = json.loads((own / "index.json").read_text())
    index["tasks"][0]["descriptions"].append("Repeat the word you are given.")
    index["tasks"][0]["heldout_descriptions"].append("Say the word again.")
    (own / "index.json").write_text(json.dumps(index))
    after = library_fingerprint(own, with_descriptions=False), library_fingerprint(own)
    assert after[0] == before[0] and after[1] != before[1]  # descriptions count only for recipes that read them
    index["tasks"][0]["counts"]["train"] += 1
    (own / "index.json").write_text(json.dumps(index))
    assert library_fingerprint(own, with_descriptions=False) != before[0]


@pytest.mark.parametrize("section, key, value, message", [
    ("loop", "lr", float("nan"), "loop.lr must be a finite number > 0, got nan"),
    ("loop", "lr", float("inf"), "loop.lr must be a finite number > 0, got inf"),
    ("loop", "max_grad_norm", -1.0, "loop.max_grad_norm must be a finite number > 0, got -1.0"),
    ("loop", "weight_decay", float("nan"), "loop.weight_decay must be a finite number >= 0, got nan"),
    ("data", "max_tasks", -1, "data.max_tasks must be >= 1 or null, got -1"),
])
def test_config_values_that_would_train_silently_wrong_are_refused(section, key, value, message):
    with pytest.raises(Text2LoraError) as err:
        build_config("sft", {section: {key: value}})
    assert str(err.value) == message


def test_init_refuses_a_nan_alpha(tmp_path, capsys):
    assert main(["init", "--out", str(tmp_path / "c"), "--alpha", "nan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["text2lora: error: lora.alpha must be a finite number > 0, got nan"]
    assert not (tmp_path / "c").exists()  # nothing half-written
