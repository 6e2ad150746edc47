"""Shared fixtures: tiny random models built in code, an isolated TEXT2LORA_HOME per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

TINY_LLAMA = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=128,
    max_position_embeddings=64,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def tiny_llama(seed: int = 0, **overrides):
    """A random 3-layer Llama with GQA (q 32->32, v 32->16), in eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY_LLAMA, **overrides}))
    return model.eval()


def trained_looking_copy(ckpt: Path, out: Path, std: float) -> Path:
    """A copy of checkpoint ``ckpt`` with random (non-zero) head weights, standing in for a trained one."""
    from text2lora.checkpoint import load_checkpoint, save_checkpoint

    net, meta = load_checkpoint(ckpt)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.head.weight.values():
            p.normal_(0, std)
    meta.trained = True
    return save_checkpoint(net, meta, out)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama saved as a Hugging Face folder (config + safetensors)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama with other shapes: adapters for tiny_model_dir must not fit it."""
    path = tmp_path_factory.mktemp("tiny-llama-wide")
    tiny_llama(hidden_size=48, num_attention_heads=4, num_key_value_heads=4).save_pretrained(path)
    return path


@pytest.fixture(autouse=True, scope="session")
def _keep_real_cache():
    """Tests may use the real cache (the bundled model converts once); nothing here writes elsewhere."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield
