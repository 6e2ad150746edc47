"""Loaders: one fixture per format, and bad input that names file and line while valid tasks still load."""

from __future__ import annotations

from pathlib import Path

import pytest

from text2lora.data.loaders import detect_format, load_path
from text2lora.data.task import GENERATION, MULTIPLE_CHOICE, Instance

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"


def _by_name(result):
    return {t.task.name: t for t in result.tasks}


def test_bigbench_multiple_choice_and_subtasks():
    result = load_path(FIXTURES / "bigbench")
    tasks = _by_name(result)
    assert sorted(tasks) == ["color_words", "toy_math.addition", "toy_math.subtraction"]
    assert result.problems == []

    colors = tasks["color_words"]
    assert colors.task.metric == MULTIPLE_CHOICE
    assert colors.task.source == "bigbench.color_words"
    assert colors.task.descriptions == ["Pick the color that the object usually has."]
    assert len(colors.instances) == 8  # the example without target_scores is skipped
    first = colors.instances[0]
    assert first.input == "What color is a banana?"
    assert first.options == ["red", "green", "blue", "yellow"]
    assert first.answer == 3 and first.output == "yellow"

    add, sub = tasks["toy_math.addition"], tasks["toy_math.subtraction"]
    assert add.task.metric == GENERATION and add.task.source == sub.task.source == "bigbench.toy_math"
    assert add.instances[0] == Instance(input="1 + 1 =", output="2")
    # A subtask without a description inherits its parent's; list targets become references.
    assert sub.task.descriptions == ["Do simple arithmetic."]
    assert sub.instances[0].output == "4" and sub.instances[0].references == ["4", "4.0"]


def test_natural_instructions_v1():
    result = load_path(FIXTURES / "natural_instructions")
    tasks = _by_name(result)
    assert sorted(tasks) == ["ni.subtask001_zoo_animal_naming", "ni.subtask002_zoo_sound_generation"]
    naming = tasks["ni.subtask001_zoo_animal_naming"].task
    assert naming.origin == "natural_instructions_v1" and naming.metric == GENERATION
    assert naming.source == "zoo"  # the dataset token of the subtask name: both zoo tasks share it
    assert naming.descriptions == ["In this task, you are given a sentence about an animal. Write the animal's name."]
    assert naming.definition.splitlines() == [
        "Definition: In this task, you are given a sentence about an animal. Write the animal's name.",
        "Things to Avoid: Do not write anything else.",
        "Prompt: Name the animal.",
    ]  # the empty "Emphasis/Caution: -" section is left out
    assert tasks["ni.subtask001_zoo_animal_naming"].instances[0] == Instance("Sentence: The cat is sleeping.", "cat")


def test_super_natural_instructions_v2():
    result = load_path(FIXTURES / "sni")
    (data,) = result.tasks
    assert data.task.name == "sni.task001_capital_cities"
    assert data.task.source == "geo_facts" and data.task.license == "CC BY 4.0"
    assert data.task.definition == "Given a country, answer with its capital city."
    assert [i.output for i in data.instances] == ["Berlin", "Rome", "Madrid", "Tokyo", "Lima"]  # empty output skipped


def test_user_jsonl_with_header_and_with_description_argument():
    gen = load_path(FIXTURES / "jsonl" / "reverse_word.jsonl")
    (data,) = gen.tasks
    assert data.task.name == "reverse_word" and data.task.source == "toy_words"
    assert data.task.descriptions == ["Reverse the word."] and data.instances[0] == Instance("apple", "elppa")

    mc = load_path(FIXTURES / "jsonl" / "parity.jsonl", description="Say whether the number is even.")
    (data,) = mc.tasks
    assert data.task.metric == MULTIPLE_CHOICE
    assert [i.answer for i in data.instances] == [1, 0, 1, 0, 1, 0, 0]  # the last answer was given as text
    assert data.task.definition == "Say whether the number is even."


def test_detect_format():
    assert detect_format(Path("x.jsonl")) == "jsonl"
    assert detect_format(Path("x.json"), {"Definition": [], "Instances": []}) == "sni"
    assert detect_format(Path("x.json"), {"examples": [], "description": "Definition: do it"}) == "ni1"
    assert detect_format(Path("x.json"), {"examples": [], "description": "Do it"}) == "bigbench"
    assert detect_format(Path("x.json"), {"rows": []}) is None
    assert detect_format(Path("x.csv"), {}) is None


def test_bad_input_names_file_and_line_and_valid_tasks_still_load():
    result = load_path(FIXTURES / "bad")
    messages = sorted(str(p).replace(str(FIXTURES) + "/", "") for p in result.problems)
    assert messages == [
        "bad/broken_lines.jsonl:3: not valid JSON (Expecting value, column 28)",
        "bad/broken_lines.jsonl:4: missing or empty 'output' (or 'options' + 'answer')",
        "bad/broken_lines.jsonl:6: expected a JSON object",
        "bad/broken_lines.jsonl:7: a multiple_choice line in a generation task",
        "bad/empty_task.json: task has no usable instances",
        "bad/malformed.json:5: not valid JSON (Expecting value, column 3)",
        'bad/no_description.jsonl: no description: pass --description or add a header line {"description": "..."}',
        "bad/unknown_format.json: unknown task format (expected one of: bigbench, ni1, sni, jsonl)",
    ]
    tasks = _by_name(result)
    assert sorted(tasks) == ["broken_lines", "good"]
    assert [i.output for i in tasks["broken_lines"].instances] == ["CAT", "BEE"]  # the good lines of a bad file
    assert len(tasks["good"].instances) == 3


def test_unreadable_directory_and_missing_path(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    (tmp_path / "ok.jsonl").write_text('{"description": "Copy."}\n{"input": "a", "output": "a"}\n')
    result = load_path(tmp_path)
    assert [str(p) for p in result.problems] == [f"{locked}: cannot read directory: Permission denied"]
    assert [t.task.name for t in result.tasks] == ["ok"]

    missing = load_path(tmp_path / "nope")
    assert [str(p) for p in missing.problems] == [f"{tmp_path / 'nope'}: no such file or directory"]


def test_unknown_format_argument():
    result = load_path(FIXTURES / "sni", format="csv")
    assert not result.tasks and "unknown format 'csv'" in str(result.problems[0])


def test_forced_format_mismatch_is_a_problem():
    result = load_path(FIXTURES / "sni" / "task001_capital_cities.json", format="bigbench")
    assert not result.tasks and "task has no usable instances" in str(result.problems[0])


@pytest.mark.parametrize("bad", [
    dict(input="x", output="y", options=["a"], answer=0),
    dict(input="x", output="b", options=["a", "b"], answer=0),
    dict(input="x", output="a", options=["a", "b"], answer=2),
    dict(input="x", output="a", answer=0),
])
def test_instance_validation(bad):
    with pytest.raises(ValueError):
        Instance(**bad)
