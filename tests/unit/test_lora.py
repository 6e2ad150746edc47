"""Per-sample LoRA application, PEFT export/import and equivalence with PEFT's own forward."""

import json

import pytest
import torch

from tests.conftest import tiny_llama
from text2lora.config import LoraConfig
from text2lora.errors import Text2LoraError
from text2lora.lora import LoraWeights, apply_lora, load_peft_adapter, save_peft_adapter
from text2lora.models.targets import discover_targets


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


@pytest.fixture(scope="module")
def layout(model):
    return discover_targets(model.config, ["q_proj", "v_proj"])


def random_lora(layout, n=1, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    factors = {
        s.name: (torch.randn(n, layout.n_layers, 8, s.d_in, generator=g) * scale,
                 torch.randn(n, layout.n_layers, s.d_out, 8, generator=g) * scale)
        for s in layout.targets
    }
    return LoraWeights(factors, layout, LoraConfig(rank=8, alpha=16.0, use_rslora=True))


def logits(model, ids, lora=None):
    with torch.no_grad():
        if lora is None:
            return model(ids).logits
        with apply_lora(model, lora):
            return model(ids).logits


def test_zero_b_is_exactly_the_base(model, layout):
    lora = random_lora(layout)
    for name, (a, b) in lora.factors.items():
        b.zero_()
    ids = torch.randint(3, 128, (2, 7))
    assert torch.equal(logits(model, ids), logits(model, ids, lora))


def test_hooks_are_removed(model, layout):
    ids = torch.randint(3, 128, (1, 5))
    base = logits(model, ids)
    changed = logits(model, ids, random_lora(layout))
    assert (base - changed).abs().max() > 1e-3
    assert torch.equal(base, logits(model, ids))


def test_mixed_batch_equals_single_runs(model, layout):
    n = 4
    lora = random_lora(layout, n=n, seed=1)
    ids = torch.randint(3, 128, (n, 6))
    batched = logits(model, ids, lora)
    for i in range(n):
        single = logits(model, ids[i : i + 1], lora.select(i))
        assert torch.allclose(batched[i], single[0], atol=1e-5)
    # and the adapters really differ per sample
    assert (logits(model, ids[:1], lora.select(0)) - logits(model, ids[:1], lora.select(1))).abs().max() > 1e-3


def test_matches_dense_merge(model, layout):
    """The hook adds exactly scale * B @ A to each target weight."""
    import copy

    lora = random_lora(layout, seed=2)
    merged = copy.deepcopy(model)
    modules = dict(merged.named_modules())
    for spec in layout.targets:
        for layer, path in enumerate(spec.paths):
            modules[path].weight.data += lora.delta(spec.name, layer)
    ids = torch.randint(3, 128, (2, 6))
    assert torch.allclose(logits(model, ids, lora), logits(merged, ids), atol=1e-5)


def test_peft_loads_our_adapter_with_the_same_logits(model, layout, tmp_path, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    lora = random_lora(layout, seed=3)
    out = save_peft_adapter(lora, tmp_path / "adapter", base_model_name_or_path=str(tiny_model_dir))
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and cfg["use_rslora"] is True and cfg["peft_type"] == "LORA"
    assert cfg["modules_to_save"] is None and sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.randint(3, 128, (2, 9))
    plain = logits(base, ids)
    ours = logits(base, ids, lora)
    assert (ours - plain).abs().max() > 1e-3  # a real, non-zero adapter
    peft_model = PeftModel.from_pretrained(base, out).eval()
    with torch.no_grad():
        theirs = peft_model(input_ids=ids).logits
    assert (ours - theirs).abs().max() <= 1e-4


def test_peft_roundtrip_and_bit_identical_files(layout, tmp_path):
    lora = random_lora(layout, seed=4)
    a = save_peft_adapter(lora, tmp_path / "a", base_model_name_or_path="x")
    b = save_peft_adapter(lora, tmp_path / "b", base_model_name_or_path="x")
    for f in ("adapter_model.safetensors", "adapter_config.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
    back = load_peft_adapter(a, layout)
    for name, (fa, fb) in lora.factors.items():
        assert torch.equal(back.factors[name][0], fa) and torch.equal(back.factors[name][1], fb)
    assert back.scale == lora.scale


def test_import_rejects_another_models_adapter(layout, tmp_path):
    wide = discover_targets(tiny_llama(hidden_size=48).config, ["q_proj", "v_proj"])
    other = random_lora(wide)
    path = save_peft_adapter(other, tmp_path / "wide", base_model_name_or_path="x")
    lora = load_peft_adapter(path, wide)
    with pytest.raises(Text2LoraError, match="another model"):
        with apply_lora(tiny_llama(), lora):
            pass
    more_layers = discover_targets(tiny_llama(num_hidden_layers=4).config, ["q_proj"])
    path = save_peft_adapter(random_lora(more_layers), tmp_path / "deep", base_model_name_or_path="x")
    with pytest.raises(Text2LoraError, match="another base model"):
        load_peft_adapter(path, layout)


def test_refuses_to_overwrite_a_foreign_directory(layout, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(Text2LoraError, match="not an adapter directory"):
        save_peft_adapter(random_lora(layout), tmp_path, base_model_name_or_path="x")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_gradients_flow_into_generated_factors(model, layout):
    lora = random_lora(layout)
    for a, b in lora.factors.values():
        a.requires_grad_(True)
        b.requires_grad_(True)
    with apply_lora(model, lora):
        model(torch.randint(3, 128, (1, 5))).logits.sum().backward()
    assert all(a.grad is not None and b.grad.abs().sum() > 0 for a, b in lora.factors.values())


def _left_padded(lengths, completion=3, seed=0, vocab=128):
    """A left-padded batch (pad 0) whose rows have these total lengths, the last ``completion`` tokens labelled."""
    from text2lora.data.prompts import collate

    gen = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths:
        ids = torch.randint(3, vocab, (n,), generator=gen).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * (n - completion) + ids[-completion:]})
    return collate(rows, 0, padding_side="left")


def test_length_groups_is_the_cheapest_split():
    import itertools
    import random

    from text2lora.train.losses import length_groups

    def cost(groups, lengths, overhead):
        return sum(len(g) * max(lengths[i] for i in g) + overhead for g in groups)

    rng = random.Random(0)
    for _ in range(30):
        lengths = [rng.randint(5, 200) for _ in range(rng.randint(1, 6))]
        overhead = rng.choice([0, 16, 48, 400])
        groups = length_groups(lengths, overhead=overhead)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        # brute force over every contiguous split of the rows sorted by length (the only candidates worth trying)
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        best = min(
            cost([order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)))], lengths, overhead)
            for k in range(len(order)) for cuts in itertools.combinations(range(1, len(order)), k)
        )
        assert cost(groups, lengths, overhead) == best
    assert length_groups([200, 10, 12, 11], overhead=48) == [[0], [2, 3, 1]]  # the long row goes alone
    assert len(length_groups([200, 10, 12, 11], overhead=10_000)) == 1  # a costly pass: keep the batch whole


def test_length_grouped_loss_matches_one_padded_batch(model, layout):
    from text2lora.train.losses import grouped_completion_loss, per_sample_completion_loss

    batch = _left_padded([40, 6, 9, 7, 38, 8])
    lora = random_lora(layout, n=6, seed=1)
    whole = grouped_completion_loss(model, batch, lora=lora, overhead=float("inf"))
    with apply_lora(model, lora):
        reference = per_sample_completion_loss(model, batch)
    split = grouped_completion_loss(model, batch, lora=lora, overhead=4)
    torch.testing.assert_close(whole, reference)
    torch.testing.assert_close(split, reference, rtol=1e-5, atol=1e-5)  # same rows, same order, same adapters
    one = random_lora(layout, n=1, seed=2)  # one adapter for every row
    with apply_lora(model, one):
        reference_one = per_sample_completion_loss(model, batch)
    torch.testing.assert_close(grouped_completion_loss(model, batch, lora=one, overhead=4), reference_one,
                               rtol=1e-5, atol=1e-5)


def test_length_grouped_loss_backpropagates_into_each_rows_adapter(model, layout):
    from text2lora.train.losses import grouped_completion_loss

    batch = _left_padded([30, 5, 6])
    lora = random_lora(layout, n=3, seed=3)
    for a, b in lora.factors.values():
        a.requires_grad_(True)
        b.requires_grad_(True)
    grouped_completion_loss(model, batch, lora=lora, overhead=4)[1].backward()  # row 1 only
    a, _ = next(iter(lora.factors.values()))
    assert a.grad[1].abs().sum() > 0 and a.grad[0].abs().sum() == 0 and a.grad[2].abs().sum() == 0
