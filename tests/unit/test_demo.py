"""`text2lora demo`: the bundled demo task, a library task on a tiny chat model end to end, and user mistakes."""

import json
import re
from pathlib import Path
from importlib import resources

import pytest
import torch
from safetensors.torch import load_file

from text2lora.cli import main
from text2lora.cli.demo import MAX_SHOTS, task_examples
from text2lora.data.task import Instance
from text2lora.examples import check_examples, examples_digest


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


@pytest.fixture(scope="module")
def examples_ckpt(setup, tmp_path_factory):
    """A trained-looking checkpoint that reads up to 4 examples (encoder: the tiny base model's own states)."""
    from tests.tiny import trained_looking_copy
    from text2lora.api import init_checkpoint
    from text2lora.checkpoint import load_checkpoint, save_checkpoint
    from text2lora.config import ExamplesConfig, HyperNetConfig
    from text2lora.encoders import EncoderSpec

    library, ckpt, _ = setup
    root = tmp_path_factory.mktemp("demo-examples")
    model = json.loads((Path(ckpt) / "t2l_config.json").read_text())["base_model"]
    fresh = init_checkpoint(root / "fresh", base_model=model, encoder=EncoderSpec(kind="base-lm", name=model, dim=32),
                            hypernet=HyperNetConfig(latent=16, head_in=32, examples=ExamplesConfig(max_examples=4)))
    trained = trained_looking_copy(fresh, root / "trained", std=0.05)
    net, meta = load_checkpoint(trained)
    with torch.no_grad():  # move the conditioner off its zero start, as training would
        net.examples.out.weight.normal_(0, 0.5)
    return save_checkpoint(net, meta, trained)


def test_bundled_demo_task_is_an_unseen_task_with_instances():
    data = json.loads(resources.files("text2lora").joinpath("demo_task.json").read_text(encoding="utf-8"))
    assert data["split"] == "unseen" and data["description"].strip() and data["license"]
    instances = [Instance.from_json(x) for x in data["instances"]]
    assert len(instances) >= 4 and all(i.input.strip() and i.output.strip() for i in instances)
    shots = check_examples(data["shots"], limit=MAX_SHOTS)
    assert len(shots) == MAX_SHOTS  # what --shots can ask for, none of them an input the demo shows
    assert not {s.input for s in shots} & {" ".join(i.input.split()) for i in instances}


def test_demo_shots_shape_the_adapter_and_stay_out_of_the_prompt(setup, examples_ckpt, tmp_path, capsys):
    from text2lora.data.library import TaskLibrary

    library, _, first = setup
    args = ["demo", "--checkpoint", examples_ckpt, "--task", "first", "--library", library, "--n", 1,
            "--max-new-tokens", 2]
    code, out, err = run([*args, "--shots", 2, "--out", tmp_path / "with"], capsys)
    assert code == 0, err
    shots = task_examples(TaskLibrary.load(library), "first", 1)[:2]
    assert len(shots) == 2 and "example 2 in:" in out and "example 3 in:" not in out
    assert shots[0].input in out and "(these 2 examples shape the adapter; they are not put in the prompt)" in out
    code, plain_out, err = run([*args, "--out", tmp_path / "plain"], capsys)
    assert code == 0, err
    assert "example 1 in:" not in plain_out
    with_w, plain_w = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("with", "plain"))
    assert any(not torch.equal(with_w[k], plain_w[k]) for k in plain_w)  # the examples changed the adapter
    provenance = json.loads((tmp_path / "with" / "text2lora.json").read_text())
    assert provenance["text2lora_examples"] == f"2 examples, sha256:{examples_digest(shots)}"
    assert "text2lora_examples" not in json.loads((tmp_path / "plain" / "text2lora.json").read_text())


@pytest.mark.parametrize("argv, message", [
    (["--shots", "5"], "reads at most 4"),
    (["--shots", "9"], "Invalid value for '--shots'"),
])
def test_demo_shots_beyond_what_the_checkpoint_reads_are_refused(setup, examples_ckpt, tmp_path, capsys, argv, message):
    library, _, _ = setup
    code, _, err = run(["demo", "--checkpoint", examples_ckpt, "--task", "first", "--library", library,
                        "--out", tmp_path / "a", *argv], capsys)
    assert code == 2 and "Traceback" not in err
    assert message in err, err


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
    (["--task", "first", "--shots", "1"], "trained on descriptions only and cannot read examples"),
])
def test_demo_user_mistakes_are_one_line(setup, tmp_path, capsys, argv, message):
    library, ckpt, _ = setup
    code, _, err = run(["demo", "--checkpoint", ckpt, "--library", library, "--out", tmp_path / "a", *argv], capsys)
    assert code == 2 and "Traceback" not in err
    assert message in err, err
