"""Integration: the real bundled SmolLM2-135M-Instruct and all-MiniLM-L6-v2 (seconds each after the first
conversion of the GGUF, which takes about a minute once per machine)."""

import json
import logging

import pytest
import torch

from text2lora.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundled():
    from text2lora.models.base import load_base_model
    from text2lora.models.bundled import BUNDLED_BASE

    return load_base_model(BUNDLED_BASE)


@pytest.fixture(scope="module")
def trained_looking(tmp_path_factory):
    """An L checkpoint for the bundled model with random (non-zero) head weights."""
    from tests.conftest import trained_looking_copy
    from text2lora.api import init_checkpoint

    fresh = init_checkpoint(tmp_path_factory.mktemp("fresh") / "t2l")
    return fresh, trained_looking_copy(fresh, tmp_path_factory.mktemp("trained") / "t2l", std=0.05)


def test_bundled_layout(bundled):
    from text2lora.models.bundled import BUNDLED_BASE
    from text2lora.models.targets import discover_targets

    layout = discover_targets(BUNDLED_BASE)
    assert layout.n_layers == 30
    assert layout.shapes == {"q_proj": (576, 576), "v_proj": (576, 192)}


def test_cli_adapter_loads_in_peft_with_the_same_logits(bundled, trained_looking, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from text2lora.api import T2L
    from text2lora.lora import apply_lora

    _, ckpt = trained_looking
    description = "Classify the sentiment of a movie review as positive or negative."
    assert main(["generate", description, "--out", str(tmp_path / "a"), "--checkpoint", str(ckpt)]) == 0
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    model, tok = bundled
    ids = tok(["The film was a delight from start to finish."], return_tensors="pt")["input_ids"]
    lora = T2L.load(ckpt).generate(description)
    with torch.no_grad():
        plain = model(ids).logits
        with apply_lora(model, lora):
            ours = model(ids).logits
    assert (ours - plain).abs().max() > 1e-2
    from text2lora.models.bundled import resolve_base_config

    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # portable, not a local path
    base = AutoModelForCausalLM.from_pretrained(resolve_base_config(config["base_model_name_or_path"]))
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "a")).eval()
    with torch.no_grad():
        theirs = peft_model(input_ids=ids).logits
    assert (ours - theirs).abs().max() <= 1e-4
    # same description and checkpoint: the same bytes
    assert main(["generate", description, "--out", str(tmp_path / "b"), "--checkpoint", str(ckpt)]) == 0
    for f in ("adapter_model.safetensors", "adapter_config.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_fresh_checkpoint_is_the_base_model(bundled, trained_looking):
    from text2lora.api import T2L
    from text2lora.lora import apply_lora

    fresh, _ = trained_looking
    model, tok = bundled
    lora = T2L.load(fresh).generate(["Translate English to French.", "Add two numbers."])
    ids = tok(["Hello there", "What is 2+2?"], return_tensors="pt", padding=True)
    with torch.no_grad():
        base = model(**ids).logits
        with apply_lora(model, lora):
            adapted = model(**ids).logits
    assert torch.equal(base, adapted)


def test_long_description_is_truncated_with_a_warning(trained_looking, caplog):
    from text2lora.api import T2L

    _, ckpt = trained_looking
    t2l = T2L.load(ckpt)
    long = "Summarise the following news article in one sentence. " * 80
    with caplog.at_level(logging.WARNING):
        lora = t2l.generate(long)
    assert lora.n == 1
    assert any("ignores the rest" in r.getMessage() for r in caplog.records)


def test_another_base_model_is_refused(trained_looking, tiny_model_dir, tmp_path, capsys):
    _, ckpt = trained_looking
    code = main(["generate", "Add numbers.", "--out", str(tmp_path / "o"), "--checkpoint", str(ckpt),
                 "--base-model", str(tiny_model_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "was made for bundled:smollm2-135m-instruct" in err and "Traceback" not in err
