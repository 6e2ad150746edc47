"""GGUF export for llama.cpp / Ollama: the adapter contract read back with gguf.GGUFReader against the PEFT
tensors (keys, names, shapes, dtypes, the q/k row permutation, the rsLoRA scale), and one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.conftest import tiny_llama
from text2lora.cli import main
from text2lora.config import LoraConfig
from text2lora.errors import Text2LoraError
from text2lora.export.gguf import GgufBase, convert_peft_adapter, gguf_alpha, rotary_permute, save_gguf_adapter
from text2lora.lora import LoraWeights, peft_state_dict, save_peft_adapter
from text2lora.models.targets import discover_targets

ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LLAMA_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
               "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny GQA Llama folder (4 heads, 2 KV heads, head_dim 8) and a random rsLoRA on all seven linears."""
    root = tmp_path_factory.mktemp("gguf")
    model = tiny_llama()
    model.save_pretrained(root / "model")
    layout = discover_targets(model.config, ALL)
    g = torch.Generator().manual_seed(0)
    factors = {s.name: (torch.randn(1, layout.n_layers, 8, s.d_in, generator=g),
                        torch.randn(1, layout.n_layers, s.d_out, 8, generator=g)) for s in layout.targets}
    lora = LoraWeights(factors, layout, LoraConfig(rank=8, alpha=16.0, use_rslora=True))
    adapter = save_peft_adapter(lora, root / "adapter", base_model_name_or_path=str(root / "model"),
                                metadata={"text2lora_description": "Antonyms.", "text2lora_base_model": "tiny"})
    return root, lora, adapter


def read(path):
    import gguf

    reader = gguf.GGUFReader(path)
    fields = {k: (f.types[0], f.contents()) for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    return fields, {t.name: t for t in reader.tensors}


def test_rotary_permutation_is_llamas():
    rows = torch.arange(8.0)[:, None]  # one head of 8 rows: halves (0..3 | 4..7) become interleaved pairs
    assert rotary_permute(rows, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    two = torch.arange(8.0)[:, None]  # two heads of 4 rows each
    assert rotary_permute(two, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    with pytest.raises(Text2LoraError, match="rotary heads"):
        rotary_permute(torch.zeros(6, 2), 2)


def _unpermute(b: np.ndarray, n_head: int) -> np.ndarray:
    d_out = b.shape[0]
    return b.reshape(n_head, d_out // n_head // 2, 2, -1).swapaxes(1, 2).reshape(b.shape)


def test_gguf_matches_the_peft_tensors(world, tmp_path):
    import gguf

    root, lora, adapter = world
    out = convert_peft_adapter(adapter, tmp_path / "a.gguf")
    fields, tensors = read(out)
    assert fields["general.architecture"][1] == "llama" and fields["general.type"][1] == "adapter"
    assert fields["adapter.type"][1] == "lora"
    assert fields["adapter.lora.alpha"][0] == gguf.GGUFValueType.FLOAT32
    assert fields["adapter.lora.alpha"][1] == pytest.approx(16.0 * math.sqrt(8), rel=1e-6)
    assert fields["text2lora.description"][1] == "Antonyms."
    # llama.cpp's scale alpha/r equals PEFT's rsLoRA scale alpha/sqrt(r)
    assert fields["adapter.lora.alpha"][1] / 8 == pytest.approx(lora.scale, rel=1e-6)
    assert set(tensors) == {f"blk.{i}.{LLAMA_NAMES[m]}.weight.lora_{s}" for i in range(3) for m in ALL for s in "ab"}
    n_head, n_kv = 4, 2
    for spec in lora.layout.targets:
        for layer in range(3):
            name = f"blk.{layer}.{LLAMA_NAMES[spec.name]}.weight"
            a, b = tensors[f"{name}.lora_a"], tensors[f"{name}.lora_b"]
            assert a.tensor_type == b.tensor_type == gguf.GGMLQuantizationType.F32
            assert a.data.shape == (8, spec.d_in) and b.data.shape == (spec.d_out, 8)  # torch order; ggml ne reversed
            assert list(a.shape) == [spec.d_in, 8] and list(b.shape) == [8, spec.d_out]
            peft_a, peft_b = (t[0, layer].numpy() for t in lora.factors[spec.name])
            np.testing.assert_array_equal(a.data, peft_a)
            heads = {"q_proj": n_head, "k_proj": n_kv}.get(spec.name)
            if heads is None:
                np.testing.assert_array_equal(b.data, peft_b)
            else:
                assert not np.array_equal(b.data, peft_b)  # really permuted
                np.testing.assert_array_equal(_unpermute(np.array(b.data), heads), peft_b)


def test_f16_outtype_and_plain_lora_alpha(world, tmp_path):
    import gguf

    root, lora, _ = world
    plain = LoraWeights(lora.factors, lora.layout, LoraConfig(rank=8, alpha=16.0, use_rslora=False))
    base = GgufBase.of(str(root / "model"))
    out = save_gguf_adapter(plain, tmp_path / "p.gguf", base=base, outtype="f16")
    fields, tensors = read(out)
    assert fields["adapter.lora.alpha"][1] == 16.0 and gguf_alpha(16.0, 8, False) == 16.0
    a = tensors["blk.1.attn_v.weight.lora_a"]
    assert a.tensor_type == gguf.GGMLQuantizationType.F16
    np.testing.assert_allclose(a.data.astype(np.float32), lora.factors["v_proj"][0][0, 1].numpy(), rtol=1e-3, atol=1e-3)


def test_generate_gguf_equals_generate_then_export(tmp_path, capsys):
    from tests.conftest import trained_looking_copy
    from text2lora.api import init_checkpoint
    from text2lora.encoders import EncoderSpec

    model_dir = tmp_path / "model"
    tiny_llama().save_pretrained(model_dir)
    fresh = init_checkpoint(tmp_path / "fresh", base_model=str(model_dir), targets=("q_proj", "k_proj", "v_proj"),
                            encoder=EncoderSpec(kind="one-hot", tasks=["antonyms", "sentiment"]))
    ckpt = str(trained_looking_copy(fresh, tmp_path / "ckpt", std=0.05))
    assert main(["generate", "antonyms", "--out", str(tmp_path / "direct"), "--checkpoint", ckpt,
                 "--format", "gguf"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "direct.gguf")
    assert main(["generate", "antonyms", "--out", str(tmp_path / "peft"), "--checkpoint", ckpt]) == 0
    assert main(["export", "gguf", str(tmp_path / "peft")]) == 0
    assert capsys.readouterr().out.strip().endswith(str(tmp_path / "peft.gguf"))
    assert (tmp_path / "direct.gguf").read_bytes() == (tmp_path / "peft.gguf").read_bytes()
    assert (tmp_path / "direct.gguf").stat().st_mode & 0o044 == 0o044  # readable by others under umask 022
    (tmp_path / "descs.txt").write_text("antonyms\nsentiment\n")
    assert main(["generate", "--descriptions-file", str(tmp_path / "descs.txt"), "--out", str(tmp_path / "many"),
                 "--checkpoint", ckpt, "--format", "gguf", "--outtype", "f16"]) == 0
    index = json.loads((tmp_path / "many" / "index.json").read_text())
    assert [e["adapter"] for e in index] == ["000-antonyms.gguf", "001-sentiment.gguf"]
    fields, _ = read(tmp_path / "many" / "001-sentiment.gguf")
    assert fields["text2lora.description"][1] == "sentiment" and fields["general.file_type"][1] == 1


def _hand_made(root, *, tensors, config=None, base=None, **lora_kwargs):
    """A PEFT directory written by PEFT's own config class and safetensors, outside text2lora's writer."""
    from peft import LoraConfig as PeftLoraConfig
    from safetensors.torch import save_file

    root.mkdir(parents=True)
    if config is not None:
        (root / "adapter_config.json").write_text(json.dumps(config))
    else:
        PeftLoraConfig(r=8, lora_alpha=16, base_model_name_or_path=str(base), task_type="CAUSAL_LM",
                       **lora_kwargs).save_pretrained(root)
    save_file(tensors, str(root / "adapter_model.safetensors"))
    return root


def assert_user_error(argv, capsys, pattern):
    capsys.readouterr()  # drop what building the fixtures printed
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("text2lora: error:"), err
    assert pattern in lines[0], err
    assert "Traceback" not in err


def test_bad_input_is_one_line(world, tmp_path, capsys):
    root, lora, adapter = world
    model = root / "model"
    ab = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(8, 32),
          "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(32, 8)}
    assert_user_error(["generate", "x", "--format", "onnx"], capsys, "unknown --format 'onnx'; choose peft or gguf")
    assert_user_error(["export", "gguf", adapter, "--outtype", "q4"], capsys, "unknown --outtype 'q4'")
    assert_user_error(["generate", "x", "--outtype", "f16"], capsys, "--outtype is for --format gguf")
    assert_user_error(["export", "gguf", tmp_path], capsys, "is not a PEFT adapter directory")
    ia3 = _hand_made(tmp_path / "ia3", tensors=ab, config={"peft_type": "IA3", "base_model_name_or_path": str(model)})
    assert_user_error(["export", "gguf", ia3], capsys, "is a IA3 adapter, not a LoRA")
    saved = _hand_made(tmp_path / "saved", tensors=ab, base=model, target_modules=["q_proj"],
                       modules_to_save=["lm_head"])
    assert_user_error(["export", "gguf", saved], capsys, "uses modules_to_save")
    deep = {k.replace("layers.0", "layers.7"): v for k, v in ab.items()}  # a layer this 3-layer base lacks
    other = _hand_made(tmp_path / "deep", tensors=deep, base=model, target_modules=["q_proj"])
    assert_user_error(["export", "gguf", other], capsys, "has no llama.cpp tensor in a 3-layer LlamaForCausalLM")
    fused = {k.replace("q_proj", "qkv_proj"): v for k, v in ab.items()}
    other = _hand_made(tmp_path / "fused", tensors=fused, base=model, target_modules=["qkv_proj"])
    assert_user_error(["export", "gguf", other], capsys, "adapts model.layers.0.self_attn.qkv_proj, which has no")
    embed = _hand_made(tmp_path / "embed", tensors={"base_model.model.model.embed_tokens.lora_embedding_A": torch.zeros(8, 128)},
                       base=model, target_modules=["embed_tokens"])
    assert_user_error(["export", "gguf", embed], capsys, "adapts the token embeddings")
    tied_model = tmp_path / "tied"
    tiny_llama(tie_word_embeddings=True).save_pretrained(tied_model)
    head = {"base_model.model.lm_head.lora_A.weight": torch.zeros(8, 32),
            "base_model.model.lm_head.lora_B.weight": torch.zeros(128, 8)}
    tied = _hand_made(tmp_path / "head", tensors=head, base=tied_model, target_modules=["lm_head"])
    assert_user_error(["export", "gguf", tied], capsys, "adapts lm_head, which this base ties to its token embeddings")
    # the same lm_head LoRA on an untied base is llama.cpp's output.weight
    assert main(["export", "gguf", str(tied), "--base-model", str(model), "--out", str(tmp_path / "head.gguf")]) == 0
    assert set(read(tmp_path / "head.gguf")[1]) == {"output.weight.lora_a", "output.weight.lora_b"}
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    assert_user_error(["export", "gguf", adapter, "--base-model", gpt2], capsys,
                      "is GPT2LMHeadModel, whose llama.cpp tensor layout text2lora does not map")
    assert_user_error(["export", "gguf", adapter, "--out", tmp_path], capsys, "is a directory; the GGUF export writes one file")
    bias = _hand_made(tmp_path / "bias", tensors={**ab, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias":
                                                  torch.zeros(32)}, base=model, target_modules=["q_proj"])
    assert_user_error(["export", "gguf", bias], capsys, "which is not a LoRA A/B weight")
    assert not list(tmp_path.glob("*.gguf.tmp*")) and not (tmp_path / "ia3.gguf").exists()


def test_peft_state_dict_is_what_gets_exported(world):
    _, lora, _ = world
    from text2lora.export.gguf import gguf_tensors

    base = GgufBase(architecture="llama", hf_architecture="LlamaForCausalLM", n_layers=3, n_head=4, n_kv_head=2,
                    tied_embeddings=False)
    out = gguf_tensors(peft_state_dict(lora), base, rank=8)
    assert GgufBase.from_config(tiny_llama().config) == base  # an in-memory config (no architectures) maps by type
    assert len(out) == 2 * 7 * 3 and list(out)[:2] == ["blk.0.ffn_down.weight.lora_a", "blk.0.ffn_down.weight.lora_b"]
