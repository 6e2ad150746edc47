"""The unseen benchmark's selection rules, its determinism and its instance check; strict metrics and copy rate."""

from __future__ import annotations

import pytest

from text2lora.data.library import TaskLibrary, write_index, write_task_instances
from text2lora.data.task import Instance, Task
from text2lora.errors import Text2LoraError
from text2lora.eval.benchmark import BenchmarkRules, check_benchmark, select_benchmark, summary
from text2lora.eval.metrics import is_copy, strict_match
from text2lora.eval.scoring import generation_scores

RULES = BenchmarkRules(n_instances=4, max_tasks_per_family=2, test_share=0.5)


def _task(name, source, origin="bigbench", split="unseen", language="en", metric="generation"):
    return Task(name=name, source=source, definition=f"Do {name}.", metric=metric, split=split, language=language,
                origin=origin)


def _gen(n, out=lambda k: f"answer {k}", inp=lambda k: f"question {k}"):
    return [Instance(input=inp(k), output=out(k)) for k in range(n)]


def make_library(root):
    specs = [
        (_task("a.one", "fam.a"), _gen(6)),
        (_task("a.two", "fam.a"), _gen(5)),
        (_task("a.three", "fam.a"), _gen(5)),  # the family's third: over max_tasks_per_family
        (_task("b.one", "fam.b"), _gen(4)),
        (_task("c.one", "fam.c", origin="openai_evals"), _gen(4)),
        (_task("d.one", "fam.d", origin="openai_evals", metric="multiple_choice"),
         [Instance.choice(f"q{k}", ["x", "y", "z"], k % 3) for k in range(4)]),
        (_task("seen.one", "fam.s", split="seen"), _gen(4)),
        (_task("fr.one", "fam.f", language="fr"), _gen(4)),
        (_task("few.one", "fam.g"), _gen(3)),
        (_task("long.one", "fam.h"), _gen(4, out=lambda k: "a b c d e f")),
        (_task("echo.one", "fam.i"), _gen(4, out=lambda k: f"question {k}")),
        (_task("mc6.one", "fam.j", metric="multiple_choice"),
         [Instance.choice("q", [str(j) for j in range(6)], 0) for _ in range(4)]),
    ]
    for task, instances in specs:
        write_task_instances(root, task.name, instances, ["test"] * len(instances))
    write_index(root, [t for t, _ in specs], meta={"sources": {"bigbench": "x"}, "seed": 0}, dropped=[])
    return TaskLibrary.load(root)


def test_selection_follows_the_rules(tmp_path):
    lib = make_library(tmp_path)
    bench = select_benchmark(lib, RULES)
    chosen = {e["name"]: side for side in ("test", "validation") for e in bench[side]}
    fam_a = {"a.one", "a.two", "a.three"}
    assert len(fam_a & set(chosen)) == 2 and set(chosen) - fam_a == {"b.one", "c.one", "d.one"}
    (left_out,) = fam_a - set(chosen)
    assert bench["excluded"] == {
        left_out: "family fam.a already has 2 tasks",
        "echo.one": "100% of answers copy the input",
        "few.one": "3 test instances (< 4)",
        "fr.one": "language fr",
        "long.one": "answers of up to 6 words (> 5)",
        "mc6.one": "6 options (> 5)",
    }  # seen tasks are never candidates
    # a family is on one side only, and each source with two families feeds both sides
    assert len({chosen[n] for n in fam_a & set(chosen)}) == 1
    assert {chosen["c.one"], chosen["d.one"]} == {"test", "validation"}
    assert {chosen[min(fam_a & set(chosen))], chosen["b.one"]} == {"test", "validation"}
    assert all(len(e["instances"]) == 4 for side in ("test", "validation") for e in bench[side])
    assert summary(bench)["test"]["tasks"] + summary(bench)["validation"]["tasks"] == 5
    assert select_benchmark(lib, RULES) == bench  # deterministic


def test_check_refuses_other_instances(tmp_path):
    lib = make_library(tmp_path / "lib")
    bench = select_benchmark(lib, RULES)
    assert check_benchmark(bench, lib, "test") == [e["name"] for e in bench["test"]]
    name = bench["test"][0]["name"]
    write_task_instances(lib.root, name, _gen(6, inp=lambda k: f"other {k}"), ["test"] * 6)
    with pytest.raises(Text2LoraError, match=f"test instances of {name} are not the benchmark's"):
        check_benchmark(bench, TaskLibrary.load(lib.root), "test")
    with pytest.raises(Text2LoraError, match="benchmark with a 'train' side"):
        check_benchmark(bench, lib, "train")


def test_strict_match_and_copy_rate():
    assert strict_match(" APPLE. ", "APPLE") == 1.0
    assert strict_match("apple", "APPLE") == 0.0  # case counts
    assert strict_match("APPLE!", "APPLE") == 0.0
    assert is_copy("the  cat\n", "the cat") == 1.0 and is_copy("The cat", "the cat") == 0.0
    # an echo of the input scores on normalised metrics, not on the strict headline
    scores = generation_scores(["apple", "PEAR", "plum"], [["APPLE"], ["PEAR"], ["PLUM"]], ["apple", "pear", "x"])
    assert scores["headline"] == "strict_exact_match"
    assert scores["score"] == pytest.approx(1 / 3) and scores["exact_match"] == pytest.approx(1.0)
    assert scores["copy_rate"] == pytest.approx(1 / 3) and scores["per_instance_copy"] == [1.0, 0.0, 0.0]
    long = generation_scores(["a b c d e f"], [["a b c d e f g"]], ["x"])
    assert long["headline"] == "rouge_l" and long["score"] == pytest.approx(long["rouge_l"])
