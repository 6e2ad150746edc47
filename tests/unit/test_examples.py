"""Conditioning on worked examples: validation at the edge, the conditioner's contract (k = 0 and a fresh
conditioner are the description-only network; pairing matters), checkpoints that record it."""

from __future__ import annotations

import json

import pytest
import torch

from text2lora.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from text2lora.config import ExamplesConfig, HyperNetConfig, from_dict
from text2lora.errors import Text2LoraError
from text2lora.examples import (
    MAX_EXAMPLE_CHARS,
    Example,
    check_examples,
    encode_examples,
    example_rows,
    read_examples_file,
    shuffled_outputs,
)
from text2lora.hypernet import build_hypernetwork

SHAPES = {"q_proj": (16, 16), "v_proj": (16, 8)}


def net(examples=None, seed=0, variant="L"):
    cfg = HyperNetConfig(variant=variant, latent=16, head_in=32, examples=examples)
    return build_hypernetwork(cfg, encoder_dim=12, n_layers=2, shapes=SHAPES, seed=seed)


def feats(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, 2, 12, generator=g), torch.ones(n, k, dtype=torch.bool)


def randomise(module, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
@pytest.mark.parametrize("variant", ["L", "M", "S"])
def test_fresh_conditioner_and_k0_are_the_description_only_network(variant, pooling):
    plain, cond = net(variant=variant), net(ExamplesConfig(max_examples=4, pooling=pooling), variant=variant)
    randomise(plain)  # a trained-looking description-only network...
    cond.load_state_dict(plain.state_dict(), strict=False)  # ...and the same weights under a fresh conditioner
    plain.eval(), cond.eval()
    emb = torch.randn(3, 12)
    want = plain(emb)
    for examples in (None, feats(3, 4), (feats(3, 2)[0], torch.zeros(3, 2, dtype=torch.bool))):
        got = cond(emb, examples)
        for name in want:
            torch.testing.assert_close(got[name][0], want[name][0])
            torch.testing.assert_close(got[name][1], want[name][1])


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_trained_conditioner_reads_pairs_and_ignores_masked_rows(pooling):
    cond = net(ExamplesConfig(max_examples=4, pooling=pooling))
    randomise(cond)
    cond.eval()
    emb = torch.randn(2, 12)
    x, mask = feats(2, 3)
    base = cond(emb)["q_proj"][1]
    real = cond(emb, (x, mask))["q_proj"][1]
    assert not torch.allclose(real, base)  # examples change the adapter
    swapped = x.clone()
    swapped[:, :, 1] = x[:, [1, 2, 0], 1]  # each input with another example's output
    assert not torch.allclose(cond(emb, (swapped, mask))["q_proj"][1], real)
    # a row with no examples is the description-only adapter, whatever its (masked) features hold
    mask2 = mask.clone()
    mask2[1] = False
    out = cond(emb, (x, mask2))["q_proj"][1]
    torch.testing.assert_close(out[1], base[1])
    torch.testing.assert_close(out[0], real[0])
    # padding: an extra masked slot changes nothing
    padded = (torch.cat([x, torch.randn(2, 1, 2, 12)], 1), torch.cat([mask, torch.zeros(2, 1, dtype=torch.bool)], 1))
    torch.testing.assert_close(cond(emb, padded)["q_proj"][1], real)


def test_gradients_reach_the_conditioner_from_zero_init():
    cond = net(ExamplesConfig(max_examples=4))
    randomise(cond.head)
    out = cond(torch.randn(2, 12), feats(2, 3))
    sum(b.pow(2).sum() + a.pow(2).sum() for a, b in out.values()).backward()
    assert cond.examples.out.weight.grad.abs().sum() > 0


def test_description_only_network_refuses_examples_but_accepts_empty_ones():
    plain = net()
    emb = torch.randn(2, 12)
    x, mask = feats(2, 2)
    with pytest.raises(Text2LoraError, match="descriptions only"):
        plain(emb, (x, mask))
    plain(emb, (x, torch.zeros_like(mask)))
    with pytest.raises(ValueError, match="example features"):
        net(ExamplesConfig())(emb, (x[:, :, :1], mask))


def test_checkpoint_records_conditioning_and_old_configs_load(tmp_path):
    from text2lora.encoders import EncoderSpec
    from text2lora.models.targets import TargetLayout, TargetSpec

    layout = TargetLayout("llama", 2, tuple(
        TargetSpec(name, d_in, d_out, tuple(f"model.layers.{i}.self_attn.{name}" for i in range(2)))
        for name, (d_in, d_out) in SHAPES.items()))
    spec = EncoderSpec(kind="one-hot", name="", dim=12, tasks=[f"t{i}" for i in range(12)])
    meta = CheckpointMeta(hypernet=HyperNetConfig(latent=16, head_in=32, examples=ExamplesConfig(max_examples=5)),
                          base_model="m", layout=layout, encoder=spec)
    cond = net(ExamplesConfig(max_examples=5))
    save_checkpoint(cond, meta, tmp_path / "c")
    loaded, meta2 = load_checkpoint(tmp_path / "c")
    assert meta2.hypernet.examples == ExamplesConfig(max_examples=5) and loaded.max_examples == 5
    # a description-only checkpoint writes no "examples" key, as before the feature existed
    plain_meta = CheckpointMeta(hypernet=HyperNetConfig(latent=16, head_in=32), base_model="m", layout=layout,
                                encoder=spec)
    save_checkpoint(net(), plain_meta, tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "t2l_config.json").read_text())
    assert "examples" not in cfg["hypernet"]
    assert load_checkpoint(tmp_path / "p")[0].max_examples == 0
    with pytest.raises(Text2LoraError, match="pooling"):
        from_dict(HyperNetConfig, {"examples": {"pooling": "max"}}, "hypernet")


def test_check_examples_accepts_the_documented_shapes():
    got = check_examples([{"input": " a  b ", "output": "c"}, ("d", "e"), Example("f", "g")])
    assert got == [Example("a b", "c"), Example("d", "e"), Example("f", "g")]
    assert check_examples(None) == [] and check_examples([]) == []


@pytest.mark.parametrize("bad, message", [
    ("dog -> DOG", "must be a list"),
    ({"input": "a", "output": "b"}, "must be a list"),
    ([{"input": "a"}], "needs both"),
    ([{"input": "a", "output": "b", "label": 1}], "unknown field"),
    ([{"input": "a", "output": ""}], "is empty"),
    ([{"input": "   ", "output": "b"}], "is empty"),
    ([{"input": 3, "output": "b"}], "must be a string"),
    ([{"input": "a", "output": None}], "must be a string"),
    ([{"input": "x" * (MAX_EXAMPLE_CHARS + 1), "output": "b"}], "the limit is"),
    ([{"input": "\ud83d", "output": "b"}], "not valid Unicode"),
    ([["a", "b", "c"]], "must be an object"),
    ([42], "must be an object"),
])
def test_check_examples_refuses_bad_input(bad, message):
    with pytest.raises(Text2LoraError, match=message):
        check_examples(bad)


def test_too_many_examples():
    with pytest.raises(Text2LoraError, match="the limit is 3"):
        check_examples([("a", "b")] * 4, limit=3)
    with pytest.raises(Text2LoraError, match="at most 2"):
        encode_examples(lambda t: torch.zeros(len(t), 4), [[Example("a", "b")] * 3], 4, max_examples=2)


def test_example_rows_shared_or_per_description():
    shared = example_rows([{"input": "a", "output": "b"}], 2)
    assert shared == [[Example("a", "b")], [Example("a", "b")]]
    per = example_rows([[("a", "b")], []], 2)
    assert per == [[Example("a", "b")], []]
    assert example_rows(None, 2) == [[], []]
    with pytest.raises(Text2LoraError, match="one per description"):
        example_rows([[("a", "b")]], 2)


def test_encode_examples_pads_and_encodes_each_text_once():
    seen = []

    def encode(texts):
        seen.append(list(texts))
        return torch.stack([torch.full((4,), float(len(t))) for t in texts])

    rows = [[Example("aa", "b"), Example("ccc", "b")], []]
    x, mask = encode_examples(encode, rows, 4, max_examples=8)
    assert x.shape == (2, 2, 2, 4) and mask.tolist() == [[True, True], [False, False]]
    assert x[0, 1, 0, 0] == 3 and x[0, 1, 1, 0] == 1 and x[1].abs().sum() == 0
    assert len(seen) == 1 and sorted(seen[0]) == ["aa", "b", "ccc"]


def test_shuffled_outputs_pairs_every_input_with_another_output():
    ex = [Example("1", "a"), Example("2", "b"), Example("3", "c")]
    sh = shuffled_outputs(ex)
    assert [e.input for e in sh] == ["1", "2", "3"]
    assert all(s.output != e.output for s, e in zip(sh, ex)) and sorted(e.output for e in sh) == ["a", "b", "c"]


def test_read_examples_file(tmp_path):
    f = tmp_path / "ex.jsonl"
    f.write_text('{"description": "Upper-case the word."}\n{"input": "dog", "output": "DOG"}\n\n'
                 '{"input": "Pick one.", "options": ["yes", "no"], "answer": 1}\n')
    got = read_examples_file(f)
    assert got[0] == Example("dog", "DOG")
    assert got[1].output == "no" and "Options:" in got[1].input
    for text, message in [('{"input": "dog"}\n', "ex.jsonl:1"), ("not json\n", "not valid JSON"),
                          ("[1]\n", "expected a JSON object"), ("", "no examples"),
                          ("[" * 100000 + "\n", "not valid JSON")]:
        f.write_text(text)
        with pytest.raises(Text2LoraError, match=message):
            read_examples_file(f)
    f.write_bytes(b"\xff\xfe")
    with pytest.raises(Text2LoraError, match="not UTF-8"):
        read_examples_file(f)
    with pytest.raises(Text2LoraError, match="not found"):
        read_examples_file(tmp_path / "missing.jsonl")
    f.write_text('{"input": "a", "output": "b"}\n' * 5)
    with pytest.raises(Text2LoraError, match="more than 4"):
        read_examples_file(f, limit=4)


def test_texts_the_bundled_encoder_cuts_are_named_the_way_the_caller_knows_them(caplog):
    """A description by its position; an example text by its opening words (its position in an internal, sorted
    list of texts would mean nothing to the user); ``warn=False`` reports nothing."""
    from text2lora.encoders import EncoderSpec, SentenceTransformerEncoder

    encoder = SentenceTransformerEncoder(EncoderSpec())
    long = "alpha beta gamma delta epsilon zeta " + "word " * 400
    assert [i for i, _ in encoder.too_long(["short", long])] == [1]
    with caplog.at_level("WARNING", logger="text2lora.encoders"):
        encoder.encode(["short", long])
        encoder.encode([long], label="example text")
        encoder.encode([long], label="example text", warn=False)
    messages = [r.getMessage() for r in caplog.records if r.name == "text2lora.encoders"]
    assert len(messages) == 2
    # counting tokens must not set off transformers' own warning, which wrongly speaks of indexing errors (whether
    # that warning reaches caplog depends on what ran before; the tokenizer's flag that it fired does not)
    assert not [r for r in caplog.records if "indexing errors" in r.getMessage()]
    assert not encoder.model.tokenizer.deprecation_warnings.get("sequence-length-is-longer-than-the-specified-maximum")
    assert messages[0].startswith("description 2 is ") and "reads the first 256" in messages[0]
    assert messages[1].startswith("example text 'alpha beta gamma delta epsilon zeta ...' is ")


def test_training_reports_example_texts_it_cuts_once_and_counts_them(caplog):
    from text2lora.train.sft import ExampleEmbeddings

    class Fake:
        max_tokens = 4
        calls: list[tuple[list[str], dict]] = []

        def too_long(self, texts):
            return [(i, len(t.split())) for i, t in enumerate(texts) if len(t.split()) > self.max_tokens]

        def encode(self, texts, **kw):
            self.calls.append((list(texts), kw))
            return torch.stack([torch.full((2,), float(len(t))) for t in texts])

    fake = Fake()
    table = ExampleEmbeddings(fake)
    with caplog.at_level("WARNING", logger="text2lora.train.sft"):
        table.encode(["a", "b c d e f g", "a"])
        table.encode(["h i j k l m", "b c d e f g", "n"])
    assert table.cut == 2 and len(caplog.records) == 1
    assert "not reported one by one" in caplog.records[0].getMessage()
    assert [c[0] for c in fake.calls] == [["a", "b c d e f g"], ["h i j k l m", "n"]]  # each text encoded once
    assert all(kw == {"label": "example text", "warn": False} for _, kw in fake.calls)
