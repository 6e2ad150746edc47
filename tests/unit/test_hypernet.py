"""Hypernetwork sizes, shapes, bias-HyperInit and determinism."""

import pytest
import torch

from text2lora.config import HyperNetConfig
from text2lora.errors import Text2LoraError
from text2lora.hypernet import build_hypernetwork, count_parameters

SHAPES = {"q_proj": (32, 32), "v_proj": (32, 16)}


def _net(variant, seed=0, **kw):
    return build_hypernetwork(HyperNetConfig(variant=variant, latent=16, head_in=24, **kw), encoder_dim=12,
                              n_layers=3, shapes=SHAPES, seed=seed)


# Exact counts at Mistral-7B shapes with gte-large (1024-d) embeddings; the paper reports 55.4M, 34.4M, 5.0M.
PAPER = {"L": (55_161_344, 55.4e6), "M": (34_214_912, 34.4e6), "S": (4_988_544, 5.0e6)}


@pytest.mark.parametrize("variant", "LMS")
def test_paper_sizes(variant):
    with torch.device("meta"):
        net = build_hypernetwork(HyperNetConfig(variant=variant), encoder_dim=1024, n_layers=32,
                                 shapes={"q_proj": (4096, 4096), "v_proj": (4096, 1024)}, seed=None)
    exact, paper = PAPER[variant]
    assert count_parameters(net) == exact
    assert abs(exact - paper) / paper < 0.02


@pytest.mark.parametrize("variant", "LMS")
def test_shapes_and_fresh_init_is_a_noop(variant):
    net = _net(variant).eval()
    out = net(torch.randn(5, 12))
    for name, (d_in, d_out) in SHAPES.items():
        a, b = out[name]
        assert a.shape == (5, 3, 8, d_in) and b.shape == (5, 3, d_out, 8)
        assert torch.count_nonzero(b) == 0  # dW = B A = 0
        assert a.abs().max() > 0 and a.abs().max() <= 1 / d_in**0.5  # a Kaiming-uniform LoRA A
        # every description and layer gets the same init A (head weight zero)
        assert torch.equal(a[0], a[4]) and torch.equal(a[0, 0], a[0, 2])


@pytest.mark.parametrize("variant", "LMS")
def test_gradients_reach_the_head_at_init(variant):
    net = _net(variant).train()
    out = net(torch.randn(2, 12))
    # dW = B A = 0 at init; a loss through B must still move the (zero) head weights
    loss = sum((b * torch.randn_like(b)).sum() for _, b in out.values())
    loss.backward()
    assert all(net.head.weight[n].grad.abs().sum() > 0 for n in SHAPES)


def test_seed_determinism_and_variants_differ():
    a, b, c = _net("L", seed=3), _net("L", seed=3), _net("L", seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_bad_config_and_input():
    with pytest.raises(Text2LoraError, match="unknown variant"):
        HyperNetConfig(variant="XL")
    with pytest.raises(Text2LoraError, match="multiple of 4"):
        HyperNetConfig(latent=10)
    with pytest.raises(ValueError, match=r"\(N, 12\)"):
        _net("L")(torch.randn(2, 7))
