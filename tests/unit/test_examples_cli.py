"""`text2lora generate --examples` and `T2L.generate(examples=...)` end to end on a tiny model: the examples
change the adapter, stay out of its provenance except as a digest, and every mistake is one line, exit 2."""

from __future__ import annotations

import json

import pytest
import torch

from tests.tiny import build_tiny, with_examples
from text2lora.api import T2L
from text2lora.cli import main


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples-cli")
    _, plain = build_tiny(root)
    return plain, with_examples(plain, root / "shots", max_examples=3, std=0.3)

def write(path, lines):
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    return path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code, err, pattern):
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and pattern in lines[0] and "Traceback" not in err, err


def test_generate_with_examples(ckpts, tmp_path, capsys):
    plain, shots = ckpts
    f = write(tmp_path / "ex.jsonl", [{"description": "Reverse the word."}, {"input": "cat", "output": "tac"},
                                      {"input": "dog", "output": "god"}])
    code, out, err = run(["generate", "Reverse the word.", "--examples", f, "--checkpoint", shots,
                          "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    code, _, err = run(["generate", "Reverse the word.", "--checkpoint", shots, "--out", tmp_path / "b"], capsys)
    assert code == 0, err
    a = (tmp_path / "a" / "adapter_model.safetensors").read_bytes()
    assert a != (tmp_path / "b" / "adapter_model.safetensors").read_bytes()
    meta = json.loads((tmp_path / "a" / "text2lora.json").read_text())
    assert meta["text2lora_examples"].startswith("2 examples, sha256:") and "tac" not in json.dumps(meta)
    # the API writes the same bytes
    T2L.load(shots).save_adapter("Reverse the word.", tmp_path / "c",
                                 examples=[{"input": "cat", "output": "tac"}, {"input": "dog", "output": "god"}])
    assert (tmp_path / "c" / "adapter_model.safetensors").read_bytes() == a


def test_generate_with_bad_examples(ckpts, tmp_path, capsys):
    plain, shots = ckpts
    good = write(tmp_path / "good.jsonl", [{"input": "cat", "output": "tac"}])
    cases = [
        (write(tmp_path / "a.jsonl", [{"input": "cat"}]), shots, "a.jsonl:1"),
        (write(tmp_path / "b.jsonl", ["{not json"]), shots, "not valid JSON"),
        (write(tmp_path / "c.jsonl", [{"input": "cat", "output": "x" * 5000}]), shots, "the limit is 4000"),
        (write(tmp_path / "d.jsonl", [{"input": "a", "output": "b"}] * 4), shots, "reads at most 3"),
        (tmp_path / "missing.jsonl", shots, "not found"),
        (good, plain, "descriptions only"),
    ]
    for path, ckpt, pattern in cases:
        out = tmp_path / f"out-{path.stem}"
        code, _, err = run(["generate", "Reverse.", "--examples", path, "--checkpoint", ckpt, "--out", out], capsys)
        one_line(code, err, pattern)
        assert not out.exists()


def test_api_examples_shapes(ckpts):
    _, shots = ckpts
    t2l = T2L.load(shots)
    assert t2l.max_examples == 3
    one = t2l.generate(["a", "b"], examples=[("cat", "tac")])  # one list shared by both descriptions
    per = t2l.generate(["a", "b"], examples=[[("cat", "tac")], []])  # one list per description
    plain = t2l.generate(["a", "b"])
    torch.testing.assert_close(per.factors["q_proj"][1][0], one.factors["q_proj"][1][0])
    torch.testing.assert_close(per.factors["q_proj"][1][1], plain.factors["q_proj"][1][1])
    assert not torch.allclose(one.factors["q_proj"][1][1], plain.factors["q_proj"][1][1])
