"""`text2lora init | generate | size`: end to end on tiny models, and one clear line for every user mistake."""

import json
import os
import subprocess
import sys

import pytest
import torch

from text2lora.api import T2L, init_checkpoint
from text2lora.cli import main
from text2lora.encoders import EncoderSpec

TASKS = ["sentiment", "antonyms", "translation"]


@pytest.fixture(scope="module")
def ckpt(tiny_model_dir, tmp_path_factory):
    """A fresh L checkpoint for the tiny model with a one-hot encoder (no encoder model to load)."""
    out = tmp_path_factory.mktemp("ckpt") / "t2l"
    init_checkpoint(out, base_model=str(tiny_model_dir), encoder=EncoderSpec(kind="one-hot", tasks=TASKS))
    return out


@pytest.fixture(scope="module")
def trained_ckpt(ckpt, tmp_path_factory):
    """The same checkpoint with random head weights, standing in for a trained one."""
    from tests.conftest import trained_looking_copy

    return trained_looking_copy(ckpt, tmp_path_factory.mktemp("trained") / "t2l", std=0.02)


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, pattern):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("text2lora: error:") and pattern in lines[0], err
    assert "Traceback" not in err


def test_generate_writes_peft_dirs_and_is_bit_identical(trained_ckpt, tmp_path, capsys):
    code, out, _ = run(["generate", "antonyms", "--out", tmp_path / "a", "--checkpoint", trained_ckpt], capsys)
    assert code == 0 and str(tmp_path / "a") in out
    run(["generate", "antonyms", "--out", tmp_path / "b", "--checkpoint", trained_ckpt], capsys)
    for f in ("adapter_model.safetensors", "adapter_config.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    run(["generate", "sentiment", "--out", tmp_path / "c", "--checkpoint", trained_ckpt], capsys)
    assert (tmp_path / "a" / "adapter_model.safetensors").read_bytes() != (tmp_path / "c" / "adapter_model.safetensors").read_bytes()


def test_generate_from_file(trained_ckpt, tmp_path, capsys):
    f = tmp_path / "descs.txt"
    f.write_text("antonyms\n\nsentiment\n")
    code, out, _ = run(["generate", "--descriptions-file", f, "--out", tmp_path / "many", "--checkpoint", trained_ckpt], capsys)
    assert code == 0
    index = json.loads((tmp_path / "many" / "index.json").read_text())
    assert [e["description"] for e in index] == ["antonyms", "sentiment"]
    assert all((tmp_path / "many" / e["adapter"] / "adapter_config.json").is_file() for e in index)


def test_fresh_checkpoint_adapter_leaves_logits_unchanged(ckpt, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from text2lora.lora import apply_lora

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    lora = T2L.load(ckpt).generate(["antonyms", "sentiment"])
    ids = torch.randint(3, 128, (2, 8))
    with torch.no_grad():
        base = model(ids).logits
        with apply_lora(model, lora):
            adapted = model(ids).logits
    assert torch.equal(base, adapted)


def test_init_and_size(tiny_model_dir, tmp_path, capsys):
    code, out, _ = run(["init", "--out", tmp_path / "c", "--base-model", tiny_model_dir, "--variant", "s",
                        "--encoder", "bundled:all-minilm-l6-v2"], capsys)
    assert code == 0 and "fresh S hypernetwork" in out
    meta = json.loads((tmp_path / "c" / "t2l_config.json").read_text())
    assert meta["hypernet"]["variant"] == "S" and meta["trained"] is False and meta["encoder"]["dim"] == 384
    code, out, _ = run(["size", "--model-config", tiny_model_dir / "config.json", "--variant", "M", "--json"], capsys)
    assert code == 0 and json.loads(out)["variant"] == "M"


# The pinned figures: Mistral-7B-Instruct-v0.2 shapes, latent 128, head_in 512, r 8, q_proj + v_proj,
# gte-large-en-v1.5 embeddings (1024-d); the paper reports L 55.4M, M 34.4M, S 5.0M.
MISTRAL = {"model_type": "mistral", "architectures": ["MistralForCausalLM"], "hidden_size": 4096,
           "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
           "vocab_size": 32000, "max_position_embeddings": 32768, "rope_theta": 1000000.0, "sliding_window": None}


@pytest.mark.parametrize("variant, params, paper", [("L", 55_161_344, 55.4e6), ("M", 34_214_912, 34.4e6), ("S", 4_988_544, 5.0e6)])
def test_size_mistral_7b(variant, params, paper, tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(MISTRAL))
    code, out, _ = run(["size", "--variant", variant, "--model-config", cfg, "--encoder-dim", 1024, "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result == {"variant": variant, "params": params, "bytes_fp32": 4 * params}
    assert abs(params - paper) / paper < 0.02


@pytest.mark.parametrize("argv, pattern", [
    (["generate", "", "--out", "{tmp}/o"], "description is empty"),
    (["generate", "   ", "--out", "{tmp}/o"], "description is empty"),
    (["generate", "--out", "{tmp}/o"], "give either a DESCRIPTION"),
    (["size", "--model-config", "{cfg}", "--variant", "XL"], "unknown variant 'XL'"),
    (["init", "--out", "{tmp}/c", "--base-model", "{model}", "--variant", "Q"], "unknown variant"),
    (["generate", "antonyms", "--out", "{tmp}/o", "--checkpoint", "{tmp}/missing"], "checkpoint directory not found"),
    (["size", "--model-config", "{cfg}", "--targets", "q_proj,frobnicate"], "no target module 'frobnicate'"),
    (["init", "--out", "{tmp}/c", "--base-model", "{model}", "--targets", "wq"], "its layers have: down_proj, gate_proj"),
    (["generate", "--descriptions-file", "{tmp}/nope.txt", "--out", "{tmp}/o", "--checkpoint", "{ckpt}"], "descriptions file not found"),
    (["generate", "antonyms", "--out", "{tmp}/o", "--checkpoint", "{ckpt}", "--base-model", "{other}"], "was made for"),
    (["generate", "unknown-task", "--out", "{tmp}/o", "--checkpoint", "{ckpt}"], "unknown task"),
    (["size", "--model-config", "{cfg}", "--no-such-flag"], "No such option"),
])
def test_user_errors(argv, pattern, tmp_path, tiny_model_dir, other_model_dir, ckpt, capsys):
    subs = {"tmp": tmp_path, "cfg": tiny_model_dir / "config.json", "model": tiny_model_dir, "ckpt": ckpt, "other": other_model_dir}
    code, _, err = run([a.format(**subs) for a in argv], capsys)
    assert_user_error(code, err, pattern)


def test_corrupt_checkpoints(ckpt, tmp_path, capsys):
    import shutil

    bad_json = tmp_path / "bad_json"
    shutil.copytree(ckpt, bad_json)
    (bad_json / "t2l_config.json").write_text("{ truncated")
    code, _, err = run(["generate", "antonyms", "--out", tmp_path / "o", "--checkpoint", bad_json], capsys)
    assert_user_error(code, err, "not valid JSON")

    bad_weights = tmp_path / "bad_weights"
    shutil.copytree(ckpt, bad_weights)
    data = (bad_weights / "hypernet.safetensors").read_bytes()
    (bad_weights / "hypernet.safetensors").write_bytes(data[: len(data) // 2])
    code, _, err = run(["generate", "antonyms", "--out", tmp_path / "o", "--checkpoint", bad_weights], capsys)
    assert_user_error(code, err, "cannot read checkpoint weights")

    not_ckpt = tmp_path / "not_ckpt"
    not_ckpt.mkdir()
    (not_ckpt / "t2l_config.json").write_text('{"hello": 1}')
    code, _, err = run(["generate", "antonyms", "--out", tmp_path / "o", "--checkpoint", not_ckpt], capsys)
    assert_user_error(code, err, "not a text2lora hypernetwork checkpoint")
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; see test_unwritable_out_file_parent")
def test_unwritable_out(ckpt, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    code, _, err = run(["generate", "antonyms", "--out", ro / "adapter", "--checkpoint", ckpt], capsys)
    assert_user_error(code, err, "not writable")


def test_unwritable_out_file_parent(ckpt, tmp_path, capsys):
    """--out under a regular file cannot be created, whoever runs the test (root included)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(["generate", "antonyms", "--out", blocker / "adapter", "--checkpoint", ckpt], capsys)
    assert_user_error(code, err, "cannot create directory")
    assert blocker.read_text() == "x"


def test_real_entry_point_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "text2lora", "generate", " ", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "text2lora: error: the description is empty"


def _command_defaults(*path: str) -> dict:
    import typer.main

    from text2lora.cli import _register, app

    _register()
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {p.name: p.default for p in command.params}


@pytest.mark.parametrize("path, config, renamed", [
    (("eval",), "text2lora.eval.config:EvalSettings", {}),
    (("serve",), "text2lora.serve.limits:ServeLimits", {"cache_adapters": "cache_max_adapters"}),
    (("data", "prepare"), "text2lora.data.fit:Budget", {}),
    (("data", "prepare"), "text2lora.data.prepare:PrepareConfig", {}),
    (("data", "describe"), "text2lora.data.describe:DescribeConfig", {}),
])
def test_cli_defaults_are_the_configs_defaults(path, config, renamed):
    import dataclasses
    import importlib

    module, _, name = config.partition(":")
    cls = getattr(importlib.import_module(module), name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = _command_defaults(*path)
    shared = [(option, renamed.get(option, option)) for option in defaults if renamed.get(option, option) in fields]
    assert len(shared) >= 2, f"{path} shares no options with {name}"
    instance = cls(sources=["ni1"]) if name == "PrepareConfig" else cls()
    for option, field in shared:
        if option in ("sources", "out", "extra", "threads"):
            continue  # given as text / optional on the command line, checked by their own tests
        assert defaults[option] == getattr(instance, field), f"{' '.join(path)} --{option}"


def test_library_errors_name_settings_and_the_cli_spells_them_as_flags():
    from text2lora.errors import Text2LoraError, cli_flag

    e = Text2LoraError("t2l-sft needs {t2l_sft} CHECKPOINT; {lora_library} too")
    assert str(e) == "t2l-sft needs t2l_sft CHECKPOINT; lora_library too"  # the API's spelling: config fields
    assert e.render(cli_flag) == "t2l-sft needs --t2l-sft CHECKPOINT; --lora-library too"
    assert str(Text2LoraError('a {"input": 1} stays')) == 'a {"input": 1} stays'


def test_config_file_then_set_then_explicit_options(tmp_path):
    """--config < --set < options given on the command line; options left at their default do not override."""
    import typer
    from typer.testing import CliRunner

    from text2lora.cli.options import ConfigOpt, SetOpt, settings_from
    from text2lora.eval.config import EvalSettings

    seen = {}
    app = typer.Typer()

    @app.command()
    def run(ctx: typer.Context, max_instances: int = EvalSettings().max_instances, seed: int = EvalSettings().seed,
            config: ConfigOpt = None, set_: SetOpt = None) -> None:
        seen["s"] = settings_from(ctx, EvalSettings, config, set_, max_instances=max_instances, seed=seed)

    cfg = tmp_path / "eval.yaml"
    cfg.write_text("max_instances: 7\nseed: 3\nmax_new_tokens: 9\n")
    runner = CliRunner()
    assert runner.invoke(app, ["--config", str(cfg)]).exit_code == 0
    assert (seen["s"].max_instances, seen["s"].seed, seen["s"].max_new_tokens) == (7, 3, 9)
    assert runner.invoke(app, ["--config", str(cfg), "--set", "seed=4", "--max-instances", "2"]).exit_code == 0
    assert (seen["s"].max_instances, seen["s"].seed) == (2, 4)
    assert runner.invoke(app, []).exit_code == 0 and seen["s"] == EvalSettings()
    bad = runner.invoke(app, ["--set", "nope=1"])
    assert bad.exit_code != 0 and "unknown key 'nope'" in str(bad.exception)


def test_serve_refuses_a_bad_port_before_loading_anything(capsys):
    assert main(["serve", "--port", "99999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["text2lora: error: Invalid value for '--port': Input should be less than or equal to 65535"]


def test_descriptions_files_are_bounded_and_batched(trained_ckpt, tmp_path, capsys, monkeypatch):
    import text2lora.api as api
    import text2lora.cli.core as core

    assert run(["generate", "--descriptions-file", "/dev/zero", "--out", tmp_path / "z", "--checkpoint",
                trained_ckpt], capsys)[0] == 2  # refused after 16 MiB, not read until memory runs out
    big = tmp_path / "big.txt"
    big.write_text("".join(f"task {i}\n" for i in range(core.MAX_FILE_DESCRIPTIONS + 1)))
    code, _, err = run(["generate", "--descriptions-file", big, "--out", tmp_path / "b", "--checkpoint", trained_ckpt],
                       capsys)
    assert code == 2 and f"the limit is {core.MAX_FILE_DESCRIPTIONS}" in err and not (tmp_path / "b").exists()
    # a long file is generated in batches, with the same adapters as alone
    calls = []
    real = api.T2L.generate
    monkeypatch.setattr(api.T2L, "generate", lambda self, d, examples=None: calls.append(len(d)) or real(self, d, examples))
    monkeypatch.setattr(api, "GENERATE_BATCH", 2)
    five = tmp_path / "five.txt"
    five.write_text("\n".join(TASKS + TASKS[:2]) + "\n")  # five lines; the one-hot encoder knows these names
    code, _, err = run(["generate", "--descriptions-file", five, "--out", tmp_path / "five", "--checkpoint",
                        trained_ckpt], capsys)
    assert code == 0, err
    assert calls == [2, 2, 1]
    one = api.T2L.load(trained_ckpt)
    one.save_adapter(TASKS[2], tmp_path / "single")
    from safetensors.torch import load_file

    batched = next(p for p in (tmp_path / "five").iterdir() if p.name.startswith("002-"))
    got, alone = (load_file(str(d / "adapter_model.safetensors")) for d in (batched, tmp_path / "single"))
    assert got.keys() == alone.keys()
    for key in got:  # the same adapter up to float32 rounding (a batch of 2 against a batch of 1)
        torch.testing.assert_close(got[key], alone[key], rtol=1e-5, atol=1e-6)
