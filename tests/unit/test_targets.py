"""Target discovery from configs alone, across model families."""

import pytest

from text2lora.errors import Text2LoraError
from text2lora.models.targets import TargetLayout, discover_targets

BASE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=256, pad_token_id=0, bos_token_id=1, eos_token_id=2)


@pytest.mark.parametrize(
    "model_type, extra, q, v",
    [
        ("llama", {}, (64, 64), (64, 32)),
        ("mistral", {}, (64, 64), (64, 32)),
        ("qwen2", {}, (64, 64), (64, 32)),
        ("gemma", {"head_dim": 32}, (64, 128), (64, 64)),  # explicit head_dim != hidden/heads
        ("gemma2", {"head_dim": 24}, (64, 96), (64, 48)),
    ],
)
def test_families(model_type, extra, q, v):
    layout = discover_targets({"model_type": model_type, **BASE, **extra}, ["q_proj", "v_proj"])
    assert layout.n_layers == 3
    assert layout.shapes == {"q_proj": q, "v_proj": v}
    assert layout.spec("q_proj").paths[2] == "model.layers.2.self_attn.q_proj"


def test_mistral_7b_shapes():
    cfg = {"model_type": "mistral", "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
           "num_hidden_layers": 32, "intermediate_size": 14336, "vocab_size": 32000}
    layout = discover_targets(cfg, ["q_proj", "v_proj", "down_proj"])
    assert layout.shapes == {"q_proj": (4096, 4096), "v_proj": (4096, 1024), "down_proj": (14336, 4096)}
    assert layout.n_layers == 32


def test_gemma3_multimodal_picks_the_language_model():
    cfg = {"model_type": "gemma3",
           "text_config": {**BASE, "head_dim": 32},
           "vision_config": {"hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64,
                             "num_attention_heads": 2, "image_size": 28, "patch_size": 14}}
    layout = discover_targets(cfg, ["q_proj", "v_proj"])
    assert layout.n_layers == 3
    assert layout.shapes == {"q_proj": (64, 128), "v_proj": (64, 64)}
    assert all("vision" not in p for p in layout.spec("q_proj").paths)


def test_phi3_fused_projection_and_unknown_module_lists_what_exists():
    cfg = {"model_type": "phi3", **BASE, "vocab_size": 32064, "pad_token_id": 32000, "eos_token_id": 32000}
    layout = discover_targets(cfg, ["qkv_proj"])
    assert layout.shapes == {"qkv_proj": (64, 64 + 2 * 32)}
    with pytest.raises(Text2LoraError, match=r"no target module 'q_proj'.*qkv_proj"):
        discover_targets(cfg, ["q_proj"])


def test_dotted_suffix_and_json_roundtrip(tmp_path):
    layout = discover_targets({"model_type": "llama", **BASE}, ["self_attn.o_proj", "mlp.up_proj"])
    assert layout.names == ("o_proj", "up_proj")
    assert TargetLayout.from_dict(layout.to_dict()) == layout


def test_config_file_errors(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(Text2LoraError, match="model config .* is not valid JSON"):
        discover_targets(str(bad))
    bad.write_text('{"hidden_size": 4}')
    with pytest.raises(Text2LoraError, match="no 'model_type'"):
        discover_targets(str(bad))
    with pytest.raises(Text2LoraError, match="duplicate"):
        discover_targets({"model_type": "llama", **BASE}, ["q_proj", "q_proj"])
