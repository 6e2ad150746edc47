"""`text2lora demo`: the bundled demo task, a library task on a tiny chat model end to end, and user mistakes."""

import json
import re
from importlib import resources

import pytest

from text2lora.cli import main
from text2lora.data.task import Instance


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny chat model, the fixture library and a trained-looking checkpoint whose one-hot encoder knows the
    description of the fixture's unseen task ``first``."""
    from tests.conftest import trained_looking_copy
    from tests.tiny import build_chat_model, build_library
    from text2lora.api import init_checkpoint
    from text2lora.data.library import TaskLibrary
    from text2lora.encoders import EncoderSpec

    root = tmp_path_factory.mktemp("demo")
    model = build_chat_model(root / "model")
    library = build_library(root / "lib")
    first = TaskLibrary.load(library).task("first")
    fresh = init_checkpoint(root / "fresh", base_model=str(model),
                            encoder=EncoderSpec(kind="one-hot", tasks=[first.description, "other words"]))
    return library, trained_looking_copy(fresh, root / "trained", std=0.05), first


def test_bundled_demo_task_is_an_unseen_task_with_instances():
    data = json.loads(resources.files("text2lora").joinpath("demo_task.json").read_text(encoding="utf-8"))
    assert data["split"] == "unseen" and data["description"].strip() and data["license"]
    instances = [Instance.from_json(x) for x in data["instances"]]
    assert len(instances) >= 4 and all(i.input.strip() and i.output.strip() for i in instances)


def test_demo_on_a_library_task_end_to_end(setup, tmp_path, capsys):
    library, ckpt, first = setup
    code, out, err = run(["demo", "--checkpoint", ckpt, "--task", "first", "--library", library, "--n", 2,
                          "--max-new-tokens", 4, "--out", tmp_path / "adapter"], capsys)
    assert code == 0, err
    assert "task: first (unseen split; the hypernetwork never saw this task in training)" in out
    assert first.description in " ".join(out.split())
    assert "example 2/2" in out and "example 3/" not in out
    assert out.count("[exact match") == 4  # base and adapted, for each of the 2 inputs
    assert "with the generated adapter" in out
    assert re.search(r"adapter generated in \d+ ms \(.*loading the encoder took \d+\.\d s more", " ".join(out.split()))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_demo_own_description(setup, tmp_path, capsys):
    library, ckpt, _ = setup
    code, out, err = run(["demo", "--checkpoint", ckpt, "--task", "first", "--library", library, "--n", 1,
                          "--description", "other words", "--max-new-tokens", 2, "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    assert "description: other words" in out


@pytest.mark.parametrize("argv, message", [
    (["--task", "no_such_task"], "no task 'no_such_task'"),
    (["--task", "first", "--description", "   "], "the description is empty"),
    (["--n", "0"], "Invalid value for '--n'"),
])
def test_demo_user_mistakes_are_one_line(setup, tmp_path, capsys, argv, message):
    library, ckpt, _ = setup
    code, _, err = run(["demo", "--checkpoint", ckpt, "--library", library, "--out", tmp_path / "a", *argv], capsys)
    assert code == 2 and "Traceback" not in err
    assert message in err, err
