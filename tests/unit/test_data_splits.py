"""Splits (source families never straddle seen/unseen), budget fitting and samplers (seeded, resumable)."""

from __future__ import annotations

import pytest

from text2lora.data.fit import Budget, fit_task
from text2lora.data.samplers import ExampleRef, HierarchicalSampler, encode_refs
from text2lora.data.splits import check_disjoint_sources, split_instances, split_tasks
from text2lora.data.task import Instance, Task, TaskData
from text2lora.data.testing import tiny_chat_tokenizer
from text2lora.errors import Text2LoraError


def _tasks():
    fams = {"winogrande": 7, "mctaco": 19, "quoref": 2, "drop": 3, "qasc": 7, "ropes": 3, "a": 1, "b": 1, "c": 5,
            "d": 4, "e": 2, "f": 6}
    return [Task(name=f"{fam}_{i}", source=fam, definition="d", metric="generation")
            for fam, n in fams.items() for i in range(n)]


@pytest.mark.parametrize("seed", range(8))
def test_seen_and_unseen_share_no_source(seed):
    tasks = _tasks()
    sides = split_tasks(tasks, unseen_fraction=0.25, seed=seed)
    by_source: dict[str, set[str]] = {}
    for t in tasks:
        by_source.setdefault(t.source, set()).add(sides[t.name])
    assert all(len(s) == 1 for s in by_source.values())
    unseen = sum(v == "unseen" for v in sides.values())
    assert 0 < unseen <= 0.25 * len(tasks)
    assert split_tasks(tasks, unseen_fraction=0.25, seed=seed) == sides  # deterministic


def test_split_pinned_and_explicit_sources():
    tasks = _tasks()
    sides = split_tasks(tasks, unseen_fraction=0.25, seed=0)
    assert sorted({t.source for t in tasks if sides[t.name] == "unseen"}) == ["a", "d", "drop", "qasc"]
    sides = split_tasks(tasks, unseen_sources=["mctaco"])
    assert {t.source for t in tasks if sides[t.name] == "unseen"} == {"mctaco"}
    with pytest.raises(Text2LoraError, match="unknown source"):
        split_tasks(tasks, unseen_sources=["nope"])


def test_check_disjoint_sources():
    a = Task(name="x1", source="x", definition="d", metric="generation", split="seen")
    b = Task(name="x2", source="x", definition="d", metric="generation", split="unseen")
    with pytest.raises(Text2LoraError, match="both sides.*x"):
        check_disjoint_sources([a, b])


def test_split_instances():
    labels = split_instances(100, task_split="seen", seed=0, name="t")
    assert (labels.count("train"), labels.count("validation"), labels.count("test")) == (70, 10, 20)
    assert labels == split_instances(100, task_split="seen", seed=0, name="t")
    assert labels != split_instances(100, task_split="seen", seed=1, name="t")
    big = split_instances(1000, task_split="seen", seed=0, name="t")
    assert (big.count("test"), big.count("validation")) == (100, 50)
    assert split_instances(12, task_split="seen", seed=0, name="t").count("test") == 5
    assert split_instances(7, task_split="unseen", seed=0, name="t") == ["test"] * 7


def _data(instances, name="t"):
    return TaskData(Task(name=name, source="s", definition="d", metric="generation"), instances)


def test_fit_drops_cuts_caps_and_reports():
    tok = tiny_chat_tokenizer()  # one token per character
    budget = Budget(max_prompt_tokens=40, max_output_tokens=5, max_option_tokens=4, min_instances=3,
                    max_instances=4, truncate_factor=2.0)
    insts = [Instance(f"q{i}", "ok") for i in range(3)]
    insts += [Instance("q0", "ok"),  # duplicate
              Instance("x" * 60, "ok"),  # cut in the middle (60 <= 80)
              Instance("y" * 81, "ok"),  # too long to cut
              Instance("z", "too long output"),
              Instance.choice("c", ["short", "a"], 0)]  # option over 4 tokens
    result = fit_task(_data(insts), tok, budget, seed=0)
    assert result.data is not None
    assert result.stats == {"kept": 4, "truncated": 1, "duplicate": 1, "long_input": 1, "long_output": 1,
                            "long_options": 1}
    cut = [i for i in result.data.instances if i.input.startswith("x")]
    assert len(cut) == 1 and len(cut[0].input) == 40 and " ... " in cut[0].input
    assert fit_task(_data(insts), tok, budget, seed=0).data.instances == result.data.instances  # deterministic

    small = fit_task(_data(insts[:2]), tok, budget)
    assert small.data is None and small.reason == "only 2 usable instances (< 3)"


def test_hierarchical_sampler_is_seeded_and_resumes_exactly():
    sizes = {"a": 5, "b": 3, "c": 10, "d": 0}
    descs = {"a": ["A1", "A2"], "b": ["B1"], "c": ["C1", "C2", "C3"]}
    sampler = HierarchicalSampler(sizes, descs, tasks_per_batch=2, examples_per_task=2, seed=3)
    first = [sampler.batch(i) for i in range(5)]
    for batch in first:
        tasks = [r.task for r in batch]
        assert len(batch) == 4 and len(set(tasks)) == 2 and "d" not in tasks
        assert all(tasks.count(t) == 2 for t in set(tasks))
        assert all(0 <= r.index < sizes[r.task] and r.description in descs[r.task] for r in batch)
    later = [sampler.batch(i) for i in range(5, 8)]
    resumed = HierarchicalSampler(sizes, descs, tasks_per_batch=2, examples_per_task=2, seed=3)
    assert [resumed.batch(i) for i in range(5, 8)] == later  # a new process at step 5 continues the stream
    again = HierarchicalSampler(sizes, descs, tasks_per_batch=2, examples_per_task=2, seed=3)
    assert [again.batch(i) for i in range(5)] == first
    other = HierarchicalSampler(sizes, descs, tasks_per_batch=2, examples_per_task=2, seed=4)
    assert [other.batch(i) for i in range(5)] != first


def test_encode_refs_attaches_task_and_description():
    tok = tiny_chat_tokenizer()
    instances = {"t": [Instance("a", "b")]}
    (enc,) = encode_refs([ExampleRef("t", 0, "Copy it.")], instances, tok)
    assert enc["task"] == "t" and enc["description"] == "Copy it."
    assert "Copy it." not in tok.decode(enc["input_ids"])
    (with_desc,) = encode_refs([ExampleRef("t", 0, "Copy it.")], instances, tok, description_in_prompt=True)
    assert "Copy it." in tok.decode(with_desc["input_ids"])
