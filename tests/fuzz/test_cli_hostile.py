"""Hostile and careless input to the CLI, configs and training state (issue 17): every mistake is exit code 2
and one ``text2lora: error:`` line (no traceback), nothing half-written is left behind, valid input still works.

Commands run in-process through :func:`text2lora.cli.main`; Hypothesis draws the hostile values. Everything
that can be refused before a model loads is, so the suite stays fast."""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tiny import build_tiny
from text2lora.cli import main
from text2lora.errors import Text2LoraError

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("fuzz-tiny"))


def run(capsys, argv) -> tuple[int, list[str]]:
    """Exit code and stderr lines, progress bars left out (they are not messages)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line and "\r" not in line]
    return code, lines


def assert_refused(capsys, argv, *, contains: str = "") -> str:
    code, lines = run(capsys, argv)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("text2lora: error: "), (code, lines)
    assert contains in lines[0], lines[0]
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((".tmp-", ".old-")))


# --- generate: descriptions and output paths -------------------------------------------------------------------

surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


@FAST
@given(before=st.text(max_size=20), bad=surrogate, after=st.text(max_size=20))
def test_descriptions_that_are_not_utf8_are_refused(tiny, tmp_path, capsys, before, bad, after):
    _, ckpt = tiny
    out = tmp_path / "adapter"
    assert_refused(capsys, ["generate", f"Classify {before}{bad}{after}", "--checkpoint", ckpt, "--out", out],
                   contains="not valid UTF-8")
    assert not out.exists() and leftovers(tmp_path) == []


def test_invalid_utf8_in_argv_is_one_line(tiny, tmp_path, capsys):
    import os

    _, ckpt = tiny
    description = os.fsdecode(b"Classify \xff\xfe reviews")  # what Python makes of undecodable argv bytes
    assert_refused(capsys, ["generate", description, "--checkpoint", ckpt, "--out", tmp_path / "a"],
                   contains="character 10")


@pytest.mark.parametrize("out, contains", [
    ("/proc/text2lora-adapter", "cannot write /proc/text2lora-adapter"),
    ("x" * 300, "is 300 bytes long"),
    ("nested/" + "y" * 250 + "/a", "is 250 bytes long"),
])
def test_unwritable_outputs_are_one_line(tiny, tmp_path, capsys, monkeypatch, out, contains):
    _, ckpt = tiny
    monkeypatch.chdir(tmp_path)
    assert_refused(capsys, ["generate", "Classify reviews.", "--checkpoint", ckpt, "--out", out], contains=contains)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("out, cwd, contains", [(".", "work", "current directory"), ("..", "work/sub", ""),
                                                ("sub/..", "work", "current directory")])
def test_the_working_directory_is_never_replaced(tiny, tmp_path, capsys, monkeypatch, out, cwd, contains):
    _, ckpt = tiny
    (tmp_path / cwd).mkdir(parents=True)  # empty: only the cwd rule stops the replacement
    monkeypatch.chdir(tmp_path / cwd)
    assert_refused(capsys, ["generate", "Classify reviews.", "--checkpoint", ckpt, "--out", out], contains=contains)
    assert leftovers(tmp_path / "work") == [] and leftovers(tmp_path) == [] and (tmp_path / cwd).is_dir()


def test_valid_generate_still_works(tiny, tmp_path, capsys):
    _, ckpt = tiny
    code, _ = run(capsys, ["generate", "Classify movie reviews.", "--checkpoint", ckpt, "--out", tmp_path / "a"])
    assert code == 0 and (tmp_path / "a" / "adapter_model.safetensors").is_file() and leftovers(tmp_path) == []


# --- checkpoint configs with hostile dimensions ------------------------------------------------------------------

hostile_int = st.one_of(st.integers(max_value=0), st.integers(min_value=2**21, max_value=2**80),
                        st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not float(x).is_integer()),
                        st.none(), st.booleans(), st.sampled_from(["", "big", "8", [8], {"a": 1}]))
hostile_unit = st.one_of(st.floats(min_value=1.0), st.floats(max_value=-1e-9), st.just(math.nan), st.none(),
                         st.sampled_from(["", "nan", "1e999", [0.1]]))
hostile_positive = st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf), st.none(),
                             st.sampled_from(["", "nan", "1e999", "-1"]))
FIELDS = {
    ("layout", "n_layers"): hostile_int,
    ("layout", "targets", 0, "d_in"): hostile_int,
    ("layout", "targets", 0, "d_out"): hostile_int,
    ("encoder", "dim"): hostile_int,
    ("hypernet", "latent"): hostile_int,
    ("hypernet", "head_in"): hostile_int,
    ("hypernet", "n_blocks"): hostile_int.filter(lambda v: v is not None),  # null: the variant's default
    ("hypernet", "lora", "rank"): hostile_int,
    ("hypernet", "lora", "alpha"): hostile_positive,
    ("hypernet", "dropout"): hostile_unit,
}


@FAST
@given(data=st.data())
def test_checkpoint_configs_with_hostile_sizes_are_refused_before_allocating(tiny, tmp_path_factory, capsys, data):
    _, ckpt = tiny
    key = data.draw(st.sampled_from(sorted(FIELDS, key=str)))
    value = data.draw(FIELDS[key])
    bad = tmp_path_factory.mktemp("bad-ckpt") / "ckpt"
    shutil.copytree(ckpt, bad)
    config = json.loads((bad / "t2l_config.json").read_text())
    node = config
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    (bad / "t2l_config.json").write_text(json.dumps(config))
    out = bad.parent / "adapter"
    assert_refused(capsys, ["generate", "Classify reviews.", "--checkpoint", bad, "--out", out])
    assert not out.exists()


def test_a_huge_but_well_formed_hypernetwork_is_sized_before_it_is_allocated(tiny, tmp_path, capsys):
    _, ckpt = tiny
    bad = shutil.copytree(ckpt, tmp_path / "ckpt")
    config = json.loads((bad / "t2l_config.json").read_text())
    config["hypernet"].update(latent=2**16, head_in=2**17)
    (bad / "t2l_config.json").write_text(json.dumps(config))
    t0 = time.perf_counter()
    assert_refused(capsys, ["generate", "Classify reviews.", "--checkpoint", bad, "--out", tmp_path / "a"],
                   contains="parameters; the limit is")
    assert time.perf_counter() - t0 < 10


def test_a_checkpoint_with_nan_weights_is_refused(tiny, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    _, ckpt = tiny
    bad = shutil.copytree(ckpt, tmp_path / "ckpt")
    state = load_file(str(bad / "hypernet.safetensors"))
    name = sorted(state)[-1]
    state[name] = torch.full_like(state[name], math.nan)
    save_file(state, str(bad / "hypernet.safetensors"))
    assert_refused(capsys, ["generate", "Classify reviews.", "--checkpoint", bad, "--out", tmp_path / "a"],
                   contains="NaN or infinite")
    assert not (tmp_path / "a").exists()


@FAST
@given(cut=st.integers(min_value=0, max_value=4000))
def test_a_truncated_checkpoint_is_one_line(tiny, tmp_path_factory, capsys, cut):
    _, ckpt = tiny
    bad = shutil.copytree(ckpt, tmp_path_factory.mktemp("trunc") / "ckpt")
    weights = bad / "hypernet.safetensors"
    weights.write_bytes(weights.read_bytes()[:cut])
    assert_refused(capsys, ["generate", "Classify reviews.", "--checkpoint", bad, "--out", bad.parent / "a"])


# --- init ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag, value", [("--alpha", "nan"), ("--alpha", "inf"), ("--alpha", "-1"), ("--alpha", "0"),
                                         ("--rank", "0"), ("--rank", "-3"), ("--rank", str(10**20))])
def test_init_refuses_bad_lora_settings(tiny, tmp_path, capsys, flag, value):
    model, _ = tiny
    assert_refused(capsys, ["init", "--out", tmp_path / "c", "--base-model", model, flag, value])
    assert not (tmp_path / "c").exists() and leftovers(tmp_path) == []


# --- size: malformed model configs --------------------------------------------------------------------------------

def model_config(tiny, tmp_path, **changes) -> Path:
    model, _ = tiny
    config = {**json.loads((Path(model) / "config.json").read_text()), **changes}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("changes", [
    {"hidden_size": -32}, {"hidden_size": None}, {"hidden_size": 32.5}, {"hidden_size": 33}, {"hidden_size": "big"},
    {"hidden_size": 2**40}, {"num_attention_heads": 0}, {"num_key_value_heads": 0}, {"num_hidden_layers": -1},
    {"num_hidden_layers": 10**7}, {"intermediate_size": -1}, {"vocab_size": 0}, {"model_type": "no-such-model"},
])
def test_size_refuses_malformed_model_configs_quickly(tiny, tmp_path, capsys, changes):
    t0 = time.perf_counter()
    assert_refused(capsys, ["size", "--model-config", model_config(tiny, tmp_path, **changes)])
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("args, contains", [
    (["--rank", str(10**20)], "lora.rank"), (["--rank", "0"], "lora.rank"), (["--encoder-dim", "0"], "--encoder-dim"),
    (["--encoder-dim", "-5"], "--encoder-dim"), (["--latent", "6"], "latent"), (["--head-in", str(2**30)], "head_in"),
])
def test_size_refuses_bad_options(tiny, tmp_path, capsys, args, contains):
    assert_refused(capsys, ["size", "--model-config", model_config(tiny, tmp_path), *args], contains=contains)


def test_size_refuses_deep_json_and_still_sizes_a_good_config(tiny, tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    assert_refused(capsys, ["size", "--model-config", deep], contains="deeper than Python can read")
    deep.write_text('{"model_type": "llama", "hidden_size": ' + "9" * 5000 + "}")
    assert_refused(capsys, ["size", "--model-config", deep], contains="not valid JSON")
    code, _ = run(capsys, ["size", "--model-config", model_config(tiny, tmp_path), "--json"])
    assert code == 0


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["hidden_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers",
                            "intermediate_size", "head_dim"]),
       value=st.one_of(st.integers(min_value=-2**40, max_value=2**40), st.floats(allow_nan=True), st.none(),
                       st.text(max_size=3), st.booleans()))
def test_size_never_tracebacks(tiny, tmp_path_factory, capsys, key, value):
    code, lines = run(capsys, ["size", "--json", "--model-config",
                               model_config(tiny, tmp_path_factory.mktemp("size"), **{key: value})])
    assert (code == 0 and lines == []) or (code == 2 and len(lines) == 1), (code, lines)


# --- task files, reports ------------------------------------------------------------------------------------------

def test_deep_json_in_a_task_file_is_one_line(tiny, tmp_path, capsys):
    model, _ = tiny
    task = tmp_path / "task.jsonl"
    task.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    assert_refused(capsys, ["eval", "-m", "base", "--base-model", model, "--task-file", task, "--description",
                            "Repeat the word.", "--no-cache"], contains="nested too deep")


def test_a_report_at_an_existing_file_is_refused_before_the_run(tiny, tmp_path, capsys):
    model, _ = tiny
    report = tmp_path / "report"
    report.write_text("keep me")
    assert_refused(capsys, ["eval", "-m", "base", "--base-model", model, "--task-file", tmp_path / "missing.jsonl",
                            "--report", report], contains="is a file")
    assert report.read_text() == "keep me"


# --- YAML configs and --set ---------------------------------------------------------------------------------------

def alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nloop:\n  lr: *a{levels - 1}\n"


@pytest.mark.parametrize("content, contains", [
    (bytes(range(256)) * 4, "cannot read config"),
    (alias_bomb().encode(), "uses a YAML alias"),
    (b"loop: " + b"[" * 50_000 + b"]" * 50_000, "config"),
    (b"loop:\n  steps: " + b"9" * 5000, "cannot convert"),
    (b"loop:\n  lr: .nan", "loop.lr"),
    (b"loop:\n  lr: .inf", "loop.lr"),
    (b"loop:\n  max_grad_norm: -1", "loop.max_grad_norm"),
    (b"data:\n  max_tasks: -1", "data.max_tasks"),
    (b"hypernet:\n  latent: 4e9", "latent"),
    (b"hypernet:\n  latent: 4000000000", "latent"),
    (b"loop: !!python/object:os.system {}", "not valid YAML"),
])
def test_hostile_yaml_configs_are_one_line(tmp_path, capsys, content, contains):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    t0 = time.perf_counter()
    assert_refused(capsys, ["train", "sft", "--config", path, "--out", tmp_path / "run"], contains=contains)
    assert time.perf_counter() - t0 < 10 and not (tmp_path / "run").exists()


def test_an_alias_bomb_in_set_is_refused(tmp_path, capsys):
    assert_refused(capsys, ["train", "sft", "--set", "loop.lr=[&a [1, 1, 1, 1], *a, *a, *a]", "--out", tmp_path / "r"],
                   contains="--set loop.lr uses a YAML alias")


@settings(max_examples=40, deadline=None)
@given(content=st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_any_yaml_file_loads_or_is_a_user_error(tmp_path_factory, content):
    from text2lora.train.config import load_config

    path = tmp_path_factory.mktemp("yaml") / "c.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    try:
        load_config("sft", path)
    except Text2LoraError as e:
        assert len(str(e)) < 400 and "\n" not in str(e)


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(["loop.lr", "loop.steps", "hypernet.latent", "data.max_tasks", "lora.rank", "encoder.dim"]),
       value=st.text(max_size=40))
def test_any_set_value_builds_or_is_a_user_error(key, value):
    from text2lora.cli.options import parse_sets
    from text2lora.train.config import build_config
    from text2lora.config import apply_overrides

    try:
        build_config("sft", apply_overrides({}, parse_sets([f"{key}={value}"])))
    except Text2LoraError as e:
        assert len(str(e)) < 400


# --- training state on --resume -----------------------------------------------------------------------------------

@pytest.fixture()
def saved_checkpoint(tmp_path):
    from text2lora.train.state import save_training_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    path = save_training_checkpoint(tmp_path / "ckpt-0000001", model=model, optimizer=optimizer, scheduler=scheduler,
                                    trainer={"step": 1}, config={})
    return path, model, optimizer, scheduler


def load_isolated(path, model, optimizer, scheduler):
    from text2lora.train.state import load_training_checkpoint

    py, pt = random.getstate(), torch.get_rng_state()
    try:
        return load_training_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
    finally:
        random.setstate(py)
        torch.set_rng_state(pt)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
                           lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["rng.json", "optimizer.json", "scheduler.json", "trainer.json"]), value=json_values)
def test_a_malformed_checkpoint_file_is_a_user_error(saved_checkpoint, name, value):
    path, *objects = saved_checkpoint
    original = (path / name).read_bytes()
    (path / name).write_text(json.dumps(value))
    try:
        load_isolated(path, *objects)
    except Text2LoraError as e:
        assert name in str(e) and "\n" not in str(e)
    finally:
        (path / name).write_bytes(original)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["trainable.safetensors", "optimizer.safetensors", "rng.safetensors", "rng.json",
                             "optimizer.json", "trainer.json"]), fraction=st.floats(min_value=0.0, max_value=0.99))
def test_a_truncated_checkpoint_file_is_a_user_error(saved_checkpoint, name, fraction):
    path, *objects = saved_checkpoint
    original = (path / name).read_bytes()
    (path / name).write_bytes(original[:min(int(len(original) * fraction), len(original) - 2)])  # '}\n' gone at least
    try:
        with pytest.raises(Text2LoraError, match=name.replace(".", r"\.")):
            load_isolated(path, *objects)
    finally:
        (path / name).write_bytes(original)
