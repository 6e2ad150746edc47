"""Integration: the real task library built by `text2lora data prepare` (skipped when it has not been built).

Reads ``$TEXT2LORA_HOME/library``; runs in a few seconds. Token checks use the bundled SmolLM2 tokenizer from its
converted cache folder (skipped when the model has never been converted on this machine).
"""

from __future__ import annotations

from collections import Counter

import pytest

from text2lora.data.library import TaskLibrary, default_library_dir
from text2lora.data.splits import check_disjoint_sources

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lib():
    if not (default_library_dir() / "index.json").is_file():
        pytest.skip(f"no task library at {default_library_dir()} (run `text2lora data prepare`)")
    return TaskLibrary.load()


@pytest.fixture(scope="module")
def smollm_tokenizer():
    from text2lora.models.bundled import _CONVERTED_NAME
    from text2lora.paths import home

    folder = home() / "models" / _CONVERTED_NAME
    if not (folder / "tokenizer.json").is_file():
        pytest.skip("the bundled SmolLM2 has not been converted on this machine")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def test_library_has_enough_tasks_of_both_kinds_and_sources(lib):
    if lib.meta.get("sources", {}).get("bigbench") is None:
        pytest.skip("library built without BIG-bench")
    assert len(lib) >= 150
    metrics = Counter(t.metric for t in lib.tasks)
    origins = Counter(t.origin for t in lib.tasks)
    assert metrics["generation"] >= 50 and metrics["multiple_choice"] >= 50
    assert origins["natural_instructions_v1"] >= 40 and origins["bigbench"] >= 100
    assert len(lib.seen()) > len(lib.unseen()) > 0


def test_seen_and_unseen_share_no_source(lib):
    check_disjoint_sources(lib.tasks)
    seen = {t.source for t in lib.seen()}
    unseen = {t.source for t in lib.unseen()}
    assert seen and unseen and seen.isdisjoint(unseen)
    # NI v1 families the brief names stay whole
    for family in ("mctaco", "winogrande", "qasc"):
        sides = {t.split for t in lib.tasks if t.source == family}
        assert len(sides) <= 1, family


def test_every_task_loads_with_consistent_counts(lib):
    budget = lib.meta["budget"]
    for task in lib.tasks:
        rows = lib.instances(task.name)
        assert budget["min_instances"] <= len(rows) == task.counts["total"] <= budget["max_instances"]
        assert task.descriptions and task.descriptions[0]
        if task.split == "unseen":
            assert task.counts["test"] == task.counts["total"]
        else:
            assert task.counts["train"] > 0 and task.counts["test"] > 0
        if task.metric == "multiple_choice":
            assert all(i.options and i.output == i.options[i.answer] for i in rows)


def test_budget_holds_in_base_model_tokens(lib, smollm_tokenizer):
    from text2lora.data.prompts import IGNORE_INDEX, encode_example, user_message

    budget = lib.meta["budget"]
    tok = smollm_tokenizer
    for task in lib.tasks[::7]:
        for inst in lib.instances(task.name)[:5]:
            assert len(tok(user_message(inst), add_special_tokens=False)["input_ids"]) <= budget["max_prompt_tokens"]
            enc = encode_example(tok, inst, max_prompt_tokens=None, max_output_tokens=None)
            labelled = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE_INDEX]
            assert tok.decode(labelled) == inst.output + "<|im_end|>"


def test_library_v2_with_the_evals_registry(lib):
    if "evals" not in lib.meta.get("sources", {}):
        pytest.skip("library built without the evals registry")
    assert len(lib) >= 550 and len({t.source for t in lib.tasks}) >= 300
    evals = [t for t in lib.tasks if t.origin == "openai_evals"]
    assert len(evals) >= 200 and all(t.source.startswith("evals.") and t.license.startswith("MIT") for t in evals)
    assert all(t.description for t in evals)
    dropped = {d["name"] for d in lib.dropped}
    assert "evals.hellaswag" in dropped  # a hub dataset: listed with its reason, not silently missing


def test_the_committed_benchmark_matches_the_library(lib):
    import json
    from pathlib import Path

    from text2lora.eval.benchmark import check_benchmark

    if "evals" not in lib.meta.get("sources", {}):
        pytest.skip("library built without the evals registry")
    bench = json.loads((Path(__file__).parents[2] / "benchmarks" / "v2" / "benchmark.json").read_text())
    test = check_benchmark(bench, lib, "test")
    validation = check_benchmark(bench, lib, "validation")
    assert len(test) >= 36 and len(validation) >= 20 and not set(test) & set(validation)
    families = {side: {e["family"] for e in bench[side]} for side in ("test", "validation")}
    assert len(families["test"]) >= 18 and not families["test"] & families["validation"]
    assert {e["origin"] for e in bench["test"]} == {"natural_instructions_v1", "bigbench", "openai_evals"}
    assert all(lib.task(n).split == "unseen" for n in test + validation)
