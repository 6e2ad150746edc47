"""Integration: adapters for the real bundled SmolLM2-135M-Instruct outside text2lora. A copied adapter loads with
AutoPeftModelForCausalLM from its own config (the hub id, resolved offline from a hub cache), and the GGUF export's
q/k permutation is the one the bundled base GGUF itself uses."""

import json
import shutil

import numpy as np
import pytest
import torch

from tests.hub_cache import auto_peft_logits, link_into_hub_cache, offline_env
from text2lora.cli import main

pytestmark = pytest.mark.integration

DESC = "Classify the sentiment of a movie review as positive or negative."


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    from tests.conftest import trained_looking_copy
    from text2lora.api import init_checkpoint

    root = tmp_path_factory.mktemp("bundled-portable")
    fresh = init_checkpoint(root / "fresh", targets=("q_proj", "k_proj", "v_proj"))
    ckpt = trained_looking_copy(fresh, root / "ckpt", std=0.05)
    assert main(["generate", DESC, "--out", str(root / "adapter"), "--checkpoint", str(ckpt)]) == 0
    return root, ckpt, root / "adapter"


def test_copied_adapter_loads_with_auto_peft_offline(adapter, tmp_path):
    from text2lora.api import T2L
    from text2lora.lora import apply_lora
    from text2lora.models.base import load_base_model
    from text2lora.models.bundled import BUNDLED_BASE, BUNDLED_BASE_UPSTREAM, bundled_base_dir

    _, ckpt, out = adapter
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == BUNDLED_BASE_UPSTREAM
    copy = shutil.copytree(out, tmp_path / "elsewhere")
    link_into_hub_cache(tmp_path / "hub", BUNDLED_BASE_UPSTREAM, bundled_base_dir())
    model, tok = load_base_model(BUNDLED_BASE)
    ids = tok(["The film was a delight from start to finish."], return_tensors="pt")["input_ids"]
    with torch.no_grad(), apply_lora(model, T2L.load(ckpt).generate(DESC)):
        ours = model(ids).logits
    theirs, base = auto_peft_logits(copy, ids, tmp_path, offline_env(tmp_path / "hub", tmp_path / "hf-home"))
    assert base == BUNDLED_BASE_UPSTREAM
    assert (ours - theirs).abs().max() <= 1e-4


def test_gguf_permutation_is_the_base_ggufs(adapter, tmp_path):
    import gguf
    from gguf.quants import dequantize
    from safetensors import safe_open

    from text2lora.export.gguf import rotary_permute
    from text2lora.models.bundled import bundled_base_dir, bundled_base_gguf

    _, _, out = adapter
    assert main(["export", "gguf", str(out), "--out", str(tmp_path / "a.gguf")]) == 0
    reader = gguf.GGUFReader(tmp_path / "a.gguf")
    assert {t.name for t in reader.tensors} == {f"blk.{i}.attn_{m}.weight.lora_{s}" for i in range(30)
                                                for m in "qkv" for s in "ab"}
    base = {t.name: t for t in gguf.GGUFReader(bundled_base_gguf()).tensors}
    with safe_open(str(bundled_base_dir() / "model.safetensors"), "pt") as hf:
        for module, short, heads in (("q_proj", "q", 9), ("k_proj", "k", 3)):
            t = base[f"blk.3.attn_{short}.weight"]
            in_gguf = dequantize(t.data, t.tensor_type)  # (d_out, d_in), the row order llama.cpp computes in
            in_hf = hf.get_tensor(f"model.layers.3.self_attn.{module}.weight").float()
            assert not np.allclose(in_gguf, in_hf.numpy())
            np.testing.assert_allclose(in_gguf, rotary_permute(in_hf, heads).numpy(), rtol=0, atol=1e-6)
