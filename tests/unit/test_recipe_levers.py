"""Recipe levers of the SFT run: starting from a LoRA (the AB offset: every first adapter is that LoRA, learned on
top of), and down-weighting tasks whose answers copy their inputs."""

from __future__ import annotations


import pytest
import torch

from tests.tiny import build_chat_model, build_library, sft_config_dict
from text2lora.config import HyperNetConfig, LoraConfig
from text2lora.errors import Text2LoraError
from text2lora.hypernet import build_hypernetwork
from text2lora.lora import LoraWeights, save_peft_adapter
from text2lora.train.config import build_config

SHAPES = {"q_proj": (16, 16), "v_proj": (16, 8)}


def lora_like(shapes, layers, rank, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: (torch.randn(layers, rank, d_in, generator=g), torch.randn(layers, d_out, rank, generator=g))
            for m, (d_in, d_out) in shapes.items()}


@pytest.mark.parametrize("variant", ["L", "M", "S"])
def test_start_from_makes_every_first_adapter_the_lora_and_gradients_reach_the_heads(variant):
    net = build_hypernetwork(HyperNetConfig(variant=variant, latent=16, head_in=32, offset=True), encoder_dim=12,
                             n_layers=2, shapes=SHAPES, seed=0)
    target = lora_like(SHAPES, 2, 8)
    net.start_from(target)
    out = net(torch.randn(3, 12))
    for m, (a, b) in out.items():
        torch.testing.assert_close(a, target[m][0].expand_as(a))
        torch.testing.assert_close(b, target[m][1].expand_as(b))
    sum(a.pow(2).sum() + b.pow(3).sum() for a, b in out.values()).backward()
    assert all(net.head.weight[m].grad.abs().sum() > 0 for m in SHAPES)


def test_offset_needs_the_flag_and_matching_shapes():
    plain = build_hypernetwork(HyperNetConfig(latent=16, head_in=32), encoder_dim=12, n_layers=2, shapes=SHAPES)
    with pytest.raises(Text2LoraError, match="hypernet.offset"):
        plain.start_from(lora_like(SHAPES, 2, 8))
    net = build_hypernetwork(HyperNetConfig(latent=16, head_in=32, offset=True), encoder_dim=12, n_layers=2,
                             shapes=SHAPES)
    with pytest.raises(Text2LoraError, match="has A"):
        net.start_from(lora_like(SHAPES, 3, 8))
    assert "offset" not in HyperNetConfig().to_dict() and HyperNetConfig(offset=True).to_dict()["offset"] is True


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("levers")
    return root, build_chat_model(root / "model"), build_library(root / "library")


def test_sft_init_lora_starts_at_the_multitask_lora(world):
    from text2lora.lora import load_peft_adapter
    from text2lora.models.base import load_base_model
    from text2lora.models.targets import discover_targets
    from text2lora.train.sft import SFTRecipe

    root, model_dir, library = world
    model, _ = load_base_model(str(model_dir))
    layout = discover_targets(model.config, ("q_proj", "v_proj"))
    factors = {s.name: (0.1 * torch.randn(1, layout.n_layers, 4, s.d_in), 0.1 * torch.randn(1, layout.n_layers, s.d_out, 4))
               for s in layout.targets}
    # a LoRA with another scale (alpha 4, plain alpha/r) than the hypernetwork's (alpha 16, rsLoRA)
    save_peft_adapter(LoraWeights(factors, layout, LoraConfig(rank=4, alpha=4.0, use_rslora=False)),
                      root / "mt", base_model_name_or_path=str(model_dir))
    data = sft_config_dict(model_dir, library)
    data["hypernet"].update(offset=True, lora={"rank": 4, "alpha": 16.0})
    data["init_lora"] = str(root / "mt")
    recipe = SFTRecipe(build_config("sft", data))
    lora = recipe.meta.lora(recipe.hypernet(recipe.embeddings.table[:2]))
    want = load_peft_adapter(root / "mt", layout)
    for name in factors:
        a, b = lora.factors[name]
        wa, wb = want.factors[name]
        delta = lora.config.scale * b[0] @ a[0]  # (L, d_out, d_in)
        torch.testing.assert_close(delta, want.config.scale * wb[0] @ wa[0])
        torch.testing.assert_close(lora.config.scale * b[1] @ a[1], delta)  # the same for every description
    assert recipe.meta.info["init_lora"] == str(root / "mt")
    data["hypernet"]["offset"] = False
    with pytest.raises(Text2LoraError, match="hypernet.offset"):
        SFTRecipe(build_config("sft", data))


def test_copy_downweight_scales_copy_tasks(world):
    from text2lora.train.sft import SFTRecipe

    _, model_dir, library = world
    data = sft_config_dict(model_dir, library)
    data["copy_downweight"] = 0.75
    recipe = SFTRecipe(build_config("sft", data))
    assert recipe.task_weight["copy"] == pytest.approx(0.25)  # every answer of the copy task is its input
    assert recipe.task_weight["reverse"] > 0.75 and recipe.task_weight["upper"] == pytest.approx(1.0)
    batch = recipe.batch(0, 0, 1)
    loss, _ = recipe.loss(recipe.hypernet, batch)
    assert torch.isfinite(loss)
    data["copy_downweight"] = 0.0
    assert SFTRecipe(build_config("sft", data)).task_weight == {}
    data["copy_downweight"] = 1.5
    with pytest.raises(Text2LoraError, match="copy_downweight"):
        build_config("sft", data)


def test_near_copy_is_case_sensitive_and_tolerates_a_dropped_word():
    from text2lora.eval.metrics import near_copy

    assert near_copy("the cat  sat", "the cat sat") and not near_copy("DOG", "dog")
    assert near_copy("a b c d e f g h i j", "a b c d e f g h i j k")  # F1 20/21
    assert not near_copy("positive", "The film was a joy.") and not near_copy("", "x")
