"""The library pipeline on fixtures: prepare (idempotent), TaskLibrary, the data CLI, describe, sdist handling."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from text2lora.cli import main
from text2lora.data import bigbench, fetch
from text2lora.data.describe import DescribeConfig, clean_description, describe_library, leak_strings, reject_reason
from text2lora.data.fit import Budget
from text2lora.data.library import TaskLibrary
from text2lora.data.prepare import PrepareConfig, prepare_library
from text2lora.data.task import Instance
from text2lora.data.testing import tiny_chat_tokenizer
from text2lora.errors import Text2LoraError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"
SOURCES = [FIXTURES / d for d in ("bigbench", "natural_instructions", "sni", "jsonl")]
BUDGET = Budget(max_prompt_tokens=64, max_output_tokens=16, min_instances=4, max_instances=8, max_tasks_per_source=5)


def _prepare(out: Path, **kw) -> object:
    config = PrepareConfig(out=out, sources=[], extra=SOURCES, description="Say whether the number is even.",
                           budget=BUDGET, unseen_fraction=0.3, **kw)
    return prepare_library(config, progress=False, load_tokenizer=lambda name: tiny_chat_tokenizer())


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_prepare_builds_an_idempotent_library(tmp_path):
    report = _prepare(tmp_path / "lib")
    names = [t.name for t in report.tasks]
    assert names == ["color_words", "ni.subtask001_zoo_animal_naming", "ni.subtask002_zoo_sound_generation",
                     "parity", "reverse_word", "sni.task001_capital_cities", "toy_math.addition",
                     "toy_math.subtraction"]
    assert report.dropped == []
    first = _snapshot(tmp_path / "lib")
    _prepare(tmp_path / "lib")
    assert _snapshot(tmp_path / "lib") == first

    lib = TaskLibrary.load(tmp_path / "lib")
    assert len(lib) == 8 and {t.split for t in lib.tasks} == {"seen", "unseen"}
    assert {t.source for t in lib.seen()}.isdisjoint({t.source for t in lib.unseen()})
    for t in lib.tasks:
        n = len(lib.instances(t.name))
        assert t.counts["total"] == n == min(n, BUDGET.max_instances)
        assert sum(len(lib.instances(t.name, s)) for s in ("train", "validation", "test")) == n
        if t.split == "unseen":
            assert len(lib.instances(t.name, "test")) == n
    color = lib.task("color_words")
    assert color.metric == "multiple_choice" and lib.instances("color_words")[0].options is not None
    assert lib.meta["budget"]["max_instances"] == 8
    with pytest.raises(Text2LoraError, match="did you mean color_words"):
        lib.task("color_word")
    with pytest.raises(Text2LoraError, match="unknown split"):
        lib.instances("color_words", "dev")


def test_prepare_reports_drops(tmp_path):
    config = PrepareConfig(out=tmp_path / "lib", sources=[], extra=[FIXTURES / "bigbench", FIXTURES / "bad"],
                           budget=Budget(min_instances=5, max_tasks_per_source=1))
    report = prepare_library(config, progress=False, load_tokenizer=lambda name: tiny_chat_tokenizer())
    assert [t.name for t in report.tasks] == ["color_words", "toy_math.addition"]
    assert report.dropped == [
        {"name": "broken_lines", "reason": "only 2 usable instances (< 5)"},
        {"name": "good", "reason": "only 3 usable instances (< 5)"},
        {"name": "toy_math.subtraction", "reason": "over the cap of 1 tasks for source bigbench.toy_math"},
    ]
    assert any("malformed.json:5" in p for p in report.problems)


def test_no_library_is_a_clear_error(tmp_path):
    with pytest.raises(Text2LoraError, match="run `text2lora data prepare` first"):
        TaskLibrary.load(tmp_path / "none")


def test_cli_prepare_reads_a_config_and_set(tmp_path, capsys):
    tok_dir = tmp_path / "tok"
    tiny_chat_tokenizer().save_pretrained(tok_dir)
    cfg = tmp_path / "prepare.yaml"
    cfg.write_text("sources: none\nbudget:\n  min_instances: 4\n  max_instances: 5\n  max_prompt_tokens: 64\n"
                   f"extra: [{', '.join(str(p) for p in SOURCES)}]\ndescription: Say whether the number is even.\n")
    lib = tmp_path / "lib"
    args = ["data", "prepare", "--config", str(cfg), "--out", str(lib), "--sources", "none",
            "--tokenizer", str(tok_dir), "--quiet"]
    assert main(args + ["--set", "budget.max_instances=6"]) == 0
    library = TaskLibrary.load(lib)
    assert len(library) == 8 and max(t.counts["total"] for t in library.tasks) == 6  # --set beat the file's 5
    assert library.meta["budget"]["min_instances"] == 4 and library.meta["budget"]["max_prompt_tokens"] == 64
    assert main(args + ["--max-instances", "4"]) == 0  # an explicit option beats both
    assert max(t.counts["total"] for t in TaskLibrary.load(lib).tasks) == 4
    capsys.readouterr()
    assert main(args + ["--set", "budget.max_instances=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["text2lora: error: budget.max_instances must be >= 1, got 0"]


def test_cli_prepare_list_show(tmp_path, capsys):
    tok_dir = tmp_path / "tok"
    tiny_chat_tokenizer().save_pretrained(tok_dir)
    lib = tmp_path / "lib"
    args = ["data", "prepare", "--out", str(lib), "--sources", "none", "--tokenizer", str(tok_dir), "--quiet",
            "--min-instances", "4", "--max-prompt-tokens", "64"]
    for src in SOURCES:
        args += ["--extra", str(src)]
    assert main(args) == 0  # a file without a description is a warning; every other task loads
    captured = capsys.readouterr()
    assert "warning: " in captured.err and "parity.jsonl: no description" in captured.err
    assert "7 tasks in" in captured.out
    assert main(args + ["--description", "Say whether the number is even."]) == 0
    out = capsys.readouterr().out
    assert "8 tasks in" in out and "by metric:  generation: 6, multiple_choice: 2" in out
    assert "by dataset: " in out and "by source (" in out

    assert main(["data", "list", "--library", str(lib)]) == 0
    out = capsys.readouterr().out
    assert "color_words" in out and "\n8 tasks in " in out
    rows = {tuple(line.split()[:3]) for line in out.splitlines()}
    assert ("natural_instructions_v1", "seen", "2") in rows  # the counts by dataset and split
    assert main(["data", "show", "color_words", "--library", str(lib)]) == 0
    out = capsys.readouterr().out
    assert "definition:" in out and out.count("instance ") == 3 and "options: " in out
    assert main(["data", "show", "nope", "--library", str(lib)]) == 2
    assert "no task 'nope'" in capsys.readouterr().err


class _FakeModel:
    """Stands in for an instruct model: answers each prompt with the next canned reply."""

    def __init__(self, tokenizer, replies):
        self.tokenizer, self.replies, self.calls = tokenizer, list(replies), 0

    def __call__(self, **kwargs):  # the prompt prefill; this fake keeps no cache
        return SimpleNamespace(past_key_values=None)

    def generate(self, input_ids, attention_mask, **kwargs):
        rows = []
        for _ in range(input_ids.shape[0]):
            reply = self.replies[self.calls % len(self.replies)]
            self.calls += 1
            rows.append(self.tokenizer(reply + "<|im_end|>", add_special_tokens=False)["input_ids"])
        width = max(map(len, rows))
        new = torch.tensor([r + [self.tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        return torch.cat([input_ids, new], dim=1)


REPLIES = [
    "Sure! Here is a description: Add the two numbers and write the sum.",
    "Compute the sum of the two given numbers.",
    "Compute the sum of the two given numbers.",  # duplicate
    "",  # empty
    "Add.",  # too short
    "Write down the result of adding both numbers together please.",
    "The answer to 3 + 3 is 6 and you must give that kind of result.",
]


def test_describe_filters_caches_and_resumes(tmp_path):
    _prepare(tmp_path / "lib")
    tok = tiny_chat_tokenizer()
    model = _FakeModel(tok, REPLIES)
    config = DescribeConfig(k=3, k_eval=1, prompts_per_round=1, samples_per_prompt=7, rounds=1,
                            min_similarity=None)
    report = describe_library(tmp_path / "lib", config, names=["toy_math.addition"], progress=False,
                              load_model=lambda name: (model, tok))
    assert report.described == ["toy_math.addition"] and model.calls == 7
    assert report.rejected == {"duplicate": 1, "empty": 1, "too short": 1}
    task = TaskLibrary.load(tmp_path / "lib").task("toy_math.addition")
    assert task.descriptions[0] == "Add two numbers."  # the task's own, always kept first
    assert len(task.descriptions) == 3 and len(task.heldout_descriptions) == 1
    assert "Add the two numbers and write the sum." in task.descriptions + task.heldout_descriptions

    again = describe_library(tmp_path / "lib", config, names=["toy_math.addition"], progress=False,
                             load_model=lambda name: pytest.fail("cached tasks must not load the model"))
    assert again.cached == ["toy_math.addition"] and again.described == []
    # A rebuilt library keeps the cached descriptions.
    _prepare(tmp_path / "lib")
    assert TaskLibrary.load(tmp_path / "lib").task("toy_math.addition").descriptions == task.descriptions


def test_shipped_descriptions_reach_a_fresh_clone(tmp_path, monkeypatch):
    """What `data describe` wrote, exported, is what a library built elsewhere without any cache gets."""
    import text2lora.data.library as library_module
    from text2lora.data.describe import export_descriptions

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(library_module, "SHIPPED_DIR", shipped)
    library_module.shipped_descriptions.cache_clear()
    _prepare(tmp_path / "lib")
    tok = tiny_chat_tokenizer()
    config = DescribeConfig(k=3, k_eval=1, prompts_per_round=1, samples_per_prompt=7, rounds=1, min_similarity=None)
    describe_library(tmp_path / "lib", config, names=["toy_math.addition"], progress=False,
                     load_model=lambda name: (_FakeModel(tok, REPLIES), tok))
    described = TaskLibrary.load(tmp_path / "lib").task("toy_math.addition")
    assert export_descriptions(tmp_path / "lib", config, shipped) == {"bigbench": 1}
    record = json.loads((shipped / "bigbench.json").read_text())
    assert record["written_by"] == config.cache_key() and record["written_by"]["model"] == config.model

    _prepare(tmp_path / "fresh")  # another machine: no describe cache at all
    assert not (tmp_path / "fresh" / "descriptions").exists()
    fresh = TaskLibrary.load(tmp_path / "fresh").task("toy_math.addition")
    assert fresh.descriptions == described.descriptions and fresh.heldout_descriptions == described.heldout_descriptions
    assert (tmp_path / "fresh" / "index.json").read_bytes() == (tmp_path / "lib" / "index.json").read_bytes()
    # the shipped ones count as cached: describing the fresh library at the same settings loads no model
    again = describe_library(tmp_path / "fresh", config, names=["toy_math.addition"], progress=False,
                             load_model=lambda name: pytest.fail("shipped descriptions must not be redone"))
    assert again.cached == ["toy_math.addition"]
    library_module.shipped_descriptions.cache_clear()


def test_export_leaves_out_descriptions_that_leak_a_test_answer(tmp_path):
    from text2lora.data.describe import export_descriptions
    from text2lora.data.library import descriptions_file
    from text2lora.paths import write_json

    _prepare(tmp_path / "lib")
    lib = TaskLibrary.load(tmp_path / "lib")
    task, answer = next((t, leaks[0]) for t in lib.tasks
                        if (leaks := leak_strings(lib.instances(t.name), lib.instances(t.name, "test"))))
    config = DescribeConfig(k=3, k_eval=1)
    write_json(descriptions_file(lib.root, task.name), {
        "settings": config.cache_key(), "rejected": {},
        "descriptions": [task.description, f"Add them, for example to get {answer} here.", "Sum the two numbers."],
        "heldout_descriptions": ["Write the sum of the numbers."]})
    export_descriptions(tmp_path / "lib", config, tmp_path / "out")
    record = json.loads((tmp_path / "out" / f"{task.origin}.json").read_text())["tasks"][task.name]
    assert record == {"descriptions": ["Sum the two numbers."], "heldout_descriptions": ["Write the sum of the numbers."]}


def test_description_filters():
    config = DescribeConfig()
    assert clean_description('Sure, here is the description:\n\n"Name the animal in the sentence."') \
        == "Name the animal in the sentence."
    assert clean_description("Description: Add the numbers.\n\nExtra chatter.") == "Add the numbers."
    assert clean_description("Sort the words. Then write them down in a list, separated by") == "Sort the words."
    assert clean_description("Sort the words and write them down in") == "Sort the words and write them down in"
    assert clean_description("One. Two. Three.", max_chars=9) == "One. Two."
    instances = [Instance("q1", "Berlin Germany"), Instance("q2", "yes"), Instance("q3", "yes")]
    leaks = leak_strings(instances, instances)
    assert leaks == ["berlin germany"]  # "yes" is a label shared by instances, not a leak
    assert reject_reason("Name the capital, e.g. Berlin Germany for this one.", [], leaks, config) \
        == "leaks a test answer"
    assert reject_reason("Answer yes or no about the capital city.", [], leaks, config) is None
    assert reject_reason("Name the capital city of the country.", ["name the capital city of the country"], [],
                         config) == "duplicate"
    assert reject_reason("x " * 200, [], [], config) == "too long"


# ---------------------------------------------------------------------------------------------- sdist handling
def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_only_task_json(tmp_path, monkeypatch):
    prefix = "bigbench-1.0.0/bigbench/benchmark_tasks"
    sdist = _tarball(tmp_path / "s.tar.gz", {
        f"{prefix}/foo/task.json": b'{"examples": []}',
        f"{prefix}/foo/sub/task.json": b"{}",
        f"{prefix}/foo/README.md": b"no",
        f"{prefix}/task.json": b"{}",  # not inside a task directory
        f"{prefix}/../evil/task.json": b"{}",
        "bigbench-1.0.0/setup.py": b"print()",
    })
    dest = bigbench.extract_tasks(sdist, tmp_path / "out", progress=False)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == [".complete", "foo/sub/task.json", "foo/task.json"]
    # complete: a second call does not read the archive again
    sdist.write_bytes(b"garbage")
    assert bigbench.extract_tasks(sdist, tmp_path / "out", progress=False) == dest


def test_fetch_failure_is_one_clear_line(tmp_path, monkeypatch):
    def fake_run(cmd, **kwargs):
        assert cmd[cmd.index("download") + 1:cmd.index("download") + 5] == ["--no-deps", "--no-binary", ":all:",
                                                                            "bigbench==1.0.0"]
        return subprocess.CompletedProcess(cmd, 1, "", "WARNING: Retrying...\nERROR: Could not find a version "
                                                        "that satisfies the requirement bigbench==1.0.0\n")

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    with pytest.raises(Text2LoraError) as err:
        bigbench.fetch_sdist(tmp_path, quiet=True)
    assert str(err.value) == (
        "cannot download bigbench==1.0.0 with pip: ERROR: Could not find a version that satisfies the requirement "
        "bigbench==1.0.0. Is the package registry reachable? If you have bigbench-1.0.0.tar.gz (sha256 "
        f"{bigbench.BIGBENCH_SHA256}), pass it with `text2lora data prepare --source-file PATH`, or copy it to "
        f"{tmp_path / bigbench.BIGBENCH_SDIST}")


def test_fetch_says_when_the_registry_does_not_serve_the_release(tmp_path, monkeypatch):
    stderr = ("ERROR: Could not find a version that satisfies the requirement bigbench==1.0.0 (from versions: 0.0.1)\n"
              "ERROR: No matching distribution found for bigbench==1.0.0\n")
    monkeypatch.setattr(fetch.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", stderr))
    with pytest.raises(Text2LoraError) as err:
        bigbench.fetch_sdist(tmp_path, quiet=True)
    message = str(err.value)
    assert "\n" not in message and "(from versions: 0.0.1)" in message  # the line that says what is served
    assert "The registry does not serve this release" in message and "--source-file PATH" in message


def test_source_file_stands_in_for_the_download(tmp_path, monkeypatch, capsys):
    local = tmp_path / "mine" / bigbench.BIGBENCH_SDIST
    local.parent.mkdir()
    local.write_bytes(b"a stand-in for the sdist")
    pinned = {bigbench.BIGBENCH_SDIST: fetch.sha256_file(local), "evals.whl": "0" * 64}
    cache = tmp_path / "cache"
    assert fetch.add_local(local, pinned, cache) == cache / bigbench.BIGBENCH_SDIST
    assert (cache / bigbench.BIGBENCH_SDIST).read_bytes() == local.read_bytes()

    def no_pip(cmd, **kwargs):
        raise AssertionError("pip must not run when the cache holds the file")

    monkeypatch.setattr(fetch.subprocess, "run", no_pip)
    got = fetch.fetch_pinned("bigbench==1.0.0", bigbench.BIGBENCH_SDIST, pinned[bigbench.BIGBENCH_SDIST],
                             binary=False, cache_dir=cache)
    assert got == cache / bigbench.BIGBENCH_SDIST
    # refused before anything is copied: a missing file, another name, another release
    other = tmp_path / "other.tar.gz"
    other.write_bytes(b"x")
    with pytest.raises(Text2LoraError, match="no such file"):
        fetch.add_local(tmp_path / "nope.tar.gz", pinned, cache)
    with pytest.raises(Text2LoraError, match=r"not a pinned task source; expected one of: bigbench-1\.0\.0\.tar\.gz, evals\.whl"):
        fetch.add_local(other, pinned, cache)
    local.write_bytes(b"another release")
    with pytest.raises(Text2LoraError, match="sha256 .* expected .*a different release, or a corrupt"):
        fetch.add_local(local, pinned, cache)
    assert (cache / bigbench.BIGBENCH_SDIST).read_bytes() == b"a stand-in for the sdist"
    assert sorted(p.name for p in cache.iterdir()) == [bigbench.BIGBENCH_SDIST]  # no temporary left behind
    # the CLI: a wrong file is one clear line and exit 2, before any download
    assert main(["data", "prepare", "--source-file", str(other), "--out", str(tmp_path / "lib"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"text2lora: error: --source-file {other}: not a pinned task source")


def test_fetch_rejects_a_wrong_hash(tmp_path, monkeypatch):
    def fake_run(cmd, **kwargs):
        Path(cmd[cmd.index("-d") + 1], bigbench.BIGBENCH_SDIST).write_bytes(b"not the sdist")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    with pytest.raises(Text2LoraError, match="has sha256 .* expected 1bb398a5"):
        bigbench.fetch_sdist(tmp_path, quiet=True)
    assert not (tmp_path / bigbench.BIGBENCH_SDIST).exists()


def test_index_is_plain_json(tmp_path):
    _prepare(tmp_path / "lib")
    index = json.loads((tmp_path / "lib" / "index.json").read_text())
    assert index["format"] == 1 and {"meta", "tasks", "dropped"} <= set(index)
    line = (tmp_path / "lib" / "tasks" / "color_words.jsonl").read_text().splitlines()[0]
    assert set(json.loads(line)) == {"input", "output", "options", "answer", "split"}


def test_prepare_without_the_bigbench_sdist_says_how_to_build_without_it(tmp_path, monkeypatch):
    def unavailable(**kwargs):
        raise Text2LoraError("cannot download bigbench==1.0.0 with pip: ERROR: No matching distribution")

    monkeypatch.setattr(bigbench, "fetch_sdist", unavailable)
    for sources, hint in ((["ni1", "bigbench", "evals"], "--sources evals"), (["bigbench"], "--sources none --extra DIR")):
        with pytest.raises(Text2LoraError) as err:
            prepare_library(PrepareConfig(out=tmp_path / "lib", sources=sources), progress=False,
                            load_tokenizer=lambda name: tiny_chat_tokenizer())
        assert str(err.value).startswith("cannot download bigbench==1.0.0 with pip")
        assert str(err.value).endswith(f"; or build without BIG-bench and Natural Instructions v1: {hint}")
    assert not (tmp_path / "lib").exists()
