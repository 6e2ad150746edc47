"""loop.compile: the frozen base model's decoder layers compiled in place compute the same SFT loss and gradients
as eager mode (the adapters still enter through forward hooks), and a run may resume with it switched."""

from __future__ import annotations

import pytest
import torch

from tests.tiny import build_chat_model, build_library, sft_config_dict
from text2lora.train.config import build_config


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("compile-world")
    return build_chat_model(root / "model"), build_library(root / "library")


def config(world, compiled: bool) -> dict:
    raw = sft_config_dict(*world, compile=compiled)
    raw["hypernet"]["lora"] = {"dropout": 0.0}  # no random masks: both modes must see the same computation
    raw["hypernet"]["dropout"] = 0.0
    return raw


def test_the_recipe_compiles_every_decoder_layer_in_place(world):
    from text2lora.train.sft import SFTRecipe

    recipe = SFTRecipe(build_config("sft", config(world, True)))  # compilation itself waits for the first pass
    layers = [m for m in recipe.base_model.modules() if type(m).__name__.endswith("DecoderLayer")]
    assert len(layers) == 2 and all(getattr(m, "_compiled_call_impl", None) is not None for m in layers)
    assert "model.layers.0.self_attn.q_proj" in dict(recipe.base_model.named_modules())  # paths the hooks use


@pytest.mark.slow  # compiling forward and backward takes minutes on 2 cores: pytest -m slow
def test_compiled_layers_give_the_eager_loss_and_gradients(world):
    from text2lora.train.sft import SFTRecipe

    results = []
    for compiled in (False, True):
        recipe = SFTRecipe(build_config("sft", config(world, compiled)))
        with torch.no_grad():  # a generated B that is not zero, so that A gets gradients too
            for p in recipe.hypernet.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        batch = recipe.batch(0, 0, 1)
        for _ in range(2):  # the second call reuses what the first compiled
            recipe.hypernet.zero_grad()
            loss, _ = recipe.loss(recipe.hypernet, batch)
            loss.backward()
        grad = torch.cat([p.grad.flatten() for p in recipe.hypernet.parameters() if p.grad is not None])
        results.append((float(loss), grad))
    (eager_loss, eager_grad), (compiled_loss, compiled_grad) = results
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
    assert eager_grad.abs().sum() > 0
    torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-3, atol=1e-6)


def test_compile_is_not_part_of_the_run_fingerprint(world):
    from text2lora.train.config import config_to_dict
    from text2lora.train.loop import config_fingerprint

    on, off = (config_to_dict(build_config("sft", sft_config_dict(*world, compile=c))) for c in (True, False))
    assert config_fingerprint(on) == config_fingerprint(off)


def test_a_model_without_decoder_layers_is_a_clear_error():
    from text2lora.errors import Text2LoraError
    from text2lora.models.base import compile_decoder_layers

    with pytest.raises(Text2LoraError, match="no decoder layers"):
        compile_decoder_layers(torch.nn.Linear(2, 2))
