"""Shared fixtures: tiny random models built in code, an isolated TEXT2LORA_HOME per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny import tiny_llama, trained_looking_copy  # noqa: F401  (tests import them from here too)

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
