"""Integration: the trained checkpoint that ships in the package is the default, fits its limits, and `text2lora
demo` runs it on the bundled model for a task it never saw."""

import json
from importlib import resources

import pytest
import torch

from text2lora.cli import main

pytestmark = pytest.mark.integration


def test_shipped_checkpoint_is_trained_small_and_the_default():
    from text2lora.api import SHIPPED_CHECKPOINT, default_checkpoint
    from text2lora.checkpoint import read_meta
    from text2lora.models.bundled import BUNDLED_BASE, BUNDLED_ENCODER

    assert default_checkpoint() == SHIPPED_CHECKPOINT
    meta = read_meta(SHIPPED_CHECKPOINT)
    assert meta.trained and meta.base_model == BUNDLED_BASE and meta.encoder.name == BUNDLED_ENCODER
    assert (SHIPPED_CHECKPOINT / "hypernet.safetensors").stat().st_size <= 40 * 2**20
    assert meta.info.get("recipe") == "sft" and len(meta.info.get("tasks", [])) >= 16


def test_demo_task_is_unseen_by_the_shipped_checkpoint():
    from text2lora.api import SHIPPED_CHECKPOINT
    from text2lora.checkpoint import read_meta

    demo = json.loads(resources.files("text2lora").joinpath("demo_task.json").read_text(encoding="utf-8"))
    trained_on = set(read_meta(SHIPPED_CHECKPOINT).info["tasks"])
    assert demo["split"] == "unseen" and demo["task"] not in trained_on


def test_shipped_adapters_depend_on_the_description():
    from text2lora.api import T2L

    lora = T2L.load().generate(["Simplify the sentence: keep its meaning in plainer words.",
                                "Translate the English sentence into German."])
    for name, (_, b) in lora.factors.items():
        assert torch.count_nonzero(b[0]) > 0, f"{name}: B is zero, the adapter would be a no-op"
        assert not torch.allclose(b[0], b[1]), f"{name}: two different descriptions gave the same B"


def test_demo_runs_the_shipped_checkpoint(tmp_path, capsys):
    code = main(["demo", "--n", "1", "--max-new-tokens", "8", "--out", str(tmp_path / "adapter")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "the hypernetwork never saw this task in training" in out and "NOTE: this checkpoint is untrained" not in out
    assert "with the generated adapter" in out
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
