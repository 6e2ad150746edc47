"""The evals registry source on a fixture wheel built here: which sets load, how samples become instances, the
families, and every kind of bad input (corrupt wheel, malformed lines and specs, unknown source)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from text2lora.cli import main
from text2lora.data import evals_registry, fetch
from text2lora.data.fit import Budget
from text2lora.data.language import guess_language
from text2lora.data.library import TaskLibrary
from text2lora.data.prepare import PrepareConfig, prepare_library
from text2lora.data.testing import tiny_chat_tokenizer
from text2lora.errors import Text2LoraError

UPPER = "Rewrite the given word in upper case letters and reply with that word only."
LEXICON = "You will be prompted with a single word. Does this word exist in the {} language? Answer Y or N."


def _sample(system: str | None, user: str, ideal) -> dict:
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return {"input": msgs, "ideal": ideal}


def _lines(samples) -> str:
    return "\n".join(s if isinstance(s, str) else json.dumps(s) for s in samples) + "\n"


WORDS = ["apple", "river", "stone", "cloud", "green", "piano", "tiger", "lemon"]


def make_wheel(path: Path, *, extra: dict[str, str] | None = None) -> Path:
    files = {
        "evals/registry/evals/upper.yaml": (
            "upper:\n  id: upper.dev.v0\n  description: Test upper-casing.\n"
            "upper.dev.v0:\n  class: evals.elsuite.basic.match:Match\n  args:\n    samples_jsonl: upper/samples.jsonl\n"),
        "evals/registry/data/upper/samples.jsonl": _lines(_sample(UPPER, w, w.upper()) for w in WORDS),
        # few-shot turns (named system messages and a user/assistant pair) are not part of the input
        "evals/registry/evals/reverse.yaml": (
            "reverse:\n  id: reverse.dev.v0\n  description: Reverse the letters of a word.\n"
            "reverse.dev.v0:\n  class: evals.elsuite.basic.includes:Includes\n  args:\n"
            "    samples_jsonl: reverse/samples.jsonl\n"),
        "evals/registry/data/reverse/samples.jsonl": _lines(
            {"input": [{"role": "system", "content": "You are a helpful assistant."},
                       {"role": "system", "name": "example_user", "content": "abc"},
                       {"role": "system", "name": "example_assistant", "content": "cba"},
                       {"role": "user", "content": "dog"}, {"role": "assistant", "content": "god"},
                       {"role": "user", "content": w}], "ideal": [w[::-1], w[::-1].upper()]} for w in WORDS),
        # the instruction and the question share one system message: the common prefix is the instruction
        "evals/registry/evals/lexicon.yaml": "".join(
            f"{lang}-lexicon:\n  id: {lang}-lexicon.dev.v0\n{lang}-lexicon.dev.v0:\n"
            f"  class: evals.elsuite.basic.fuzzy_match:FuzzyMatch\n  args:\n    samples_jsonl: {lang}/samples.jsonl\n"
            for lang in ("dutch", "welsh")),
        **{f"evals/registry/data/{lang}/samples.jsonl": _lines(
            {"input": [{"role": "system", "content": LEXICON.format(lang.title()) + f" Word: {w}"}], "ideal": "Y"}
            for w in WORDS) for lang in ("dutch", "welsh")},
        "evals/registry/evals/graded.yaml": (
            "graded.dev.v0:\n  class: evals.elsuite.modelgraded.classify:ModelBasedClassify\n"
            "  args:\n    samples_jsonl: graded/samples.jsonl\n    modelgraded_spec: fact\n"),
        "evals/registry/data/graded/samples.jsonl": _lines(_sample(UPPER, w, w) for w in WORDS),
        "evals/registry/evals/hub.yaml": (
            "hub.dev.v0:\n  class: evals.elsuite.multiple_choice:MultipleChoice\n  args:\n    dataset: hf://x\n"),
        "evals/registry/evals/missing.yaml": (
            "missing.dev.v0:\n  class: evals.elsuite.basic.match:Match\n  args:\n    samples_jsonl: nowhere/a.jsonl\n"),
        "evals/registry/evals/chat.yaml": (
            "chat.dev.v0:\n  class: evals.elsuite.basic.match:Match\n  args:\n    samples_jsonl: chat/s.jsonl\n"),
        "evals/registry/data/chat/s.jsonl": _lines(
            {"input": [{"role": "user", "content": "hi"}, {"role": "user", "content": w}], "ideal": w}
            for w in WORDS),
    }
    files.update(extra or {})
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def test_registry_keeps_deterministic_sets_with_their_instruction(tmp_path):
    result = evals_registry.load_registry(make_wheel(tmp_path / "evals.whl"))
    tasks = {t.task.name: t for t in result.tasks}
    assert sorted(tasks) == ["evals.dutch-lexicon", "evals.reverse", "evals.upper", "evals.welsh-lexicon"]
    dropped = {d["name"]: d["reason"] for d in result.dropped}
    assert dropped == {
        "evals.chat": "all 8 samples are multi-turn",
        "evals.graded": "model-graded (ModelBasedClassify)",
        "evals.hub": "not a sample-file eval (MultipleChoice: data from a hub or generated by the eval)",
        "evals.missing": "samples file evals/registry/data/nowhere/a.jsonl is not in the wheel",
    }
    assert result.problems == []

    upper = tasks["evals.upper"]
    assert upper.task.description == UPPER and upper.task.origin == "openai_evals"
    assert [(i.input, i.output) for i in upper.instances[:2]] == [("apple", "APPLE"), ("river", "RIVER")]
    assert all(UPPER not in i.input for i in upper.instances)
    # a stock persona line is no instruction: the spec's description is used; few-shot turns are dropped
    reverse = tasks["evals.reverse"]
    assert reverse.task.description == "Reverse the letters of a word."
    assert [i.input for i in reverse.instances] == WORDS
    assert reverse.instances[0].references == ["elppa", "ELPPA"]
    # the shared prefix of a per-sample system message is the instruction, the rest is the input
    dutch = tasks["evals.dutch-lexicon"]
    assert dutch.task.description == LEXICON.format("Dutch")
    assert dutch.instances[0].input == "Word: apple"
    # one family per template: the two lexicon sets share a spec file and an instruction
    assert dutch.task.source == tasks["evals.welsh-lexicon"].task.source == "evals.dutch"
    assert len({t.task.source for t in result.tasks}) == 3


def test_malformed_lines_warn_with_file_and_line_and_the_rest_loads(tmp_path):
    good = [_sample(UPPER, w, w.upper()) for w in WORDS]
    lines = [good[0], "{not json", {"input": [{"role": "user", "content": 3}], "ideal": "X"},
             {"input": "x"}, {"input": "x", "ideal": 5}, *good[1:]]
    wheel = make_wheel(tmp_path / "evals.whl", extra={"evals/registry/data/upper/samples.jsonl": _lines(lines)})
    result = evals_registry.load_registry(wheel)
    assert len(result.problems) == 1
    msg = str(result.problems[0])
    assert msg.startswith(f"{wheel}!evals/registry/data/upper/samples.jsonl:2: skipped 4 malformed sample line(s)")
    assert "line 2 (not valid JSON), line 3 (a message is not an object with a string 'content')" in msg
    assert "line 4 (no 'ideal' answer) and 1 more" in msg
    upper = next(t for t in result.tasks if t.task.name == "evals.upper")
    assert len(upper.instances) == len(WORDS)


def test_a_bad_spec_file_is_skipped_with_a_warning(tmp_path):
    wheel = make_wheel(tmp_path / "evals.whl", extra={"evals/registry/evals/broken.yaml": "a: [unclosed\n",
                                                      "evals/registry/evals/list.yaml": "- 1\n- 2\n"})
    result = evals_registry.load_registry(wheel)
    problems = sorted(str(p) for p in result.problems)
    assert problems == [f"{wheel}!evals/registry/evals/broken.yaml: not a valid YAML spec (ParserError); skipped",
                        f"{wheel}!evals/registry/evals/list.yaml: spec is not a mapping; skipped"]
    assert len(result.tasks) == 4


def test_a_corrupt_wheel_is_one_clear_error(tmp_path):
    bad = tmp_path / "evals.whl"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(Text2LoraError, match="cannot read the evals wheel .*evals.whl"):
        evals_registry.load_registry(bad)
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("x.txt", "x")
    with pytest.raises(Text2LoraError, match="holds no evals registry"):
        evals_registry.load_registry(empty)


def test_fetch_refuses_a_wheel_with_the_wrong_hash(tmp_path, monkeypatch):
    def fake_run(cmd, **kwargs):
        assert cmd[cmd.index("download") + 1:cmd.index("download") + 5] == ["--no-deps", "--only-binary", ":all:",
                                                                            "evals==3.0.1.post1"]
        Path(cmd[cmd.index("-d") + 1], evals_registry.EVALS_WHEEL).write_bytes(b"a truncated wheel")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    with pytest.raises(Text2LoraError, match=f"{evals_registry.EVALS_WHEEL} has sha256 .* expected 0abcb205"):
        evals_registry.fetch_wheel(tmp_path, quiet=True)
    assert not (tmp_path / evals_registry.EVALS_WHEEL).exists()


def test_a_corrupt_cached_wheel_is_fetched_again(tmp_path, monkeypatch):
    cached = tmp_path / evals_registry.EVALS_WHEEL
    cached.write_bytes(b"half a wheel")
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for evals\n")

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    with pytest.raises(Text2LoraError, match="cannot download evals==3.0.1.post1 with pip: ERROR: No matching .*--source-file"):
        evals_registry.fetch_wheel(tmp_path, quiet=True)
    assert len(calls) == 1 and not cached.exists()


def test_prepare_with_the_evals_source(tmp_path, monkeypatch):
    wheel = make_wheel(tmp_path / "evals.whl")
    monkeypatch.setattr(evals_registry, "fetch_wheel", lambda **kw: wheel)
    budget = Budget(max_prompt_tokens=64, max_output_tokens=16, min_instances=4, max_instances=8)
    config = PrepareConfig(out=tmp_path / "lib", sources=["evals"], budget=budget, unseen_fraction=0.3)
    report = prepare_library(config, progress=False, load_tokenizer=lambda name: tiny_chat_tokenizer())
    lib = TaskLibrary.load(report.root)
    assert sorted(t.name for t in lib.tasks) == ["evals.dutch-lexicon", "evals.reverse", "evals.upper",
                                                 "evals.welsh-lexicon"]
    assert {t.language for t in lib.tasks} == {"en", "nl", "cy"}
    assert lib.meta["sources"] == {"evals": f"evals==3.0.1.post1 sha256:{evals_registry.EVALS_SHA256}"}
    assert {d["name"] for d in lib.dropped} >= {"evals.graded", "evals.hub"}


def test_unknown_source_is_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(Text2LoraError, match="unknown task source 'bigbnech'; use some of ni1, bigbench, evals"):
        PrepareConfig(out=tmp_path, sources=["bigbnech"])
    code = main(["data", "prepare", "--out", str(tmp_path / "lib"), "--sources", "ni1,bigbnech"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "unknown task source 'bigbnech'" in err[0]


@pytest.mark.parametrize("name, texts, expected", [
    ("evals.upper", [UPPER, "apple APPLE"], "en"),
    ("evals.polish-lexicon", ["Does this word exist in Polish?"], "pl"),
    ("bigbench.x", ["Переведите это предложение на английский язык, пожалуйста, сейчас"], "xx-cyrillic"),
    ("evals.poems", ["根据给出的古诗词回答作者和标题"], "zh"),
    ("evals.leis", ["Considere as categorias da lei e responda com a categoria correta para cada uma das "
                    "leis apresentadas abaixo sem explicar nada mais do que a categoria pedida aqui hoje"], "xx-latin"),
])
def test_guess_language(name, texts, expected):
    assert guess_language(name, texts) == expected
