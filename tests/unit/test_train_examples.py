"""SFT with worked examples: shots come from the task's training split and never the trained instance, the
hypernetwork learns to read them (on tasks whose descriptions are all the same, only the examples tell the tasks
apart), the checkpoint records the conditioning, and a description-only checkpoint can seed such a run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from tests.tiny import WORDS, build_chat_model
from text2lora.data.library import write_index, write_task_instances
from text2lora.data.task import Instance, Task
from text2lora.train.config import build_config, config_to_dict
from text2lora.train.loop import train

SAME = "Do the task shown by the examples."
#: Four tasks that label any word with their own fixed answer: told apart by their examples only.
ANSWERS = {"alpha": "alpha", "bravo": "bravo", "charlie": "charlie", "delta": "delta"}


def build_anonymous_library(root: Path, n: int = 40) -> Path:
    """Four labelling tasks, every one described by the same sentence."""
    rng = random.Random(0)
    tasks = []
    for name, answer in ANSWERS.items():
        words = [rng.choice(WORDS) for _ in range(n)]
        write_task_instances(root, name, [Instance(input=w, output=answer) for w in words],
                             ["train"] * (n - 8) + ["validation"] * 4 + ["test"] * 4)
        tasks.append(Task(name=name, source=name, definition=SAME, metric="generation", descriptions=[SAME],
                          split="seen", counts={"train": n - 8, "validation": 4, "test": 4, "total": n}))
    write_index(root, tasks, meta={"fixture": True}, dropped=[])
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples-world")
    return build_chat_model(root / "model"), build_anonymous_library(root / "library")


def config(model_dir: Path, library: Path, **loop) -> dict:
    return {
        "base_model": str(model_dir),
        "hypernet": {"variant": "L", "latent": 16, "head_in": 32,
                     "examples": {"max_examples": 4, "pooling": "attention", "hidden": 32}},
        "encoder": {"kind": "base-lm", "name": str(model_dir), "dim": 32},
        "label_smoothing": 0.0,
        "data": {"library": str(library), "tasks_per_batch": 4, "examples_per_task": 2, "max_prompt_tokens": 64,
                 "max_output_tokens": 8, "val_instances_per_task": 4, "shots_max": 3, "shots_zero_prob": 0.0},
        "loop": {"steps": 60, "lr": 3e-3, "warmup_ratio": 0.1, "eval_every": 30, "save_every": 30, "keep_last": 2,
                 "log_every": 5, "seed": 0, "threads": 1, **loop},
    }


def test_shots_come_from_training_instances_never_the_trained_one(world):
    from text2lora.train.sft import SFTRecipe

    recipe = SFTRecipe(build_config("sft", config(*world)))
    seen_k = set()
    for step in range(20):
        batch = recipe.data.batch(step)
        for task, shots in zip(batch["task"], batch["shots"]):
            assert len(set(shots)) == len(shots) <= 3
            seen_k.add(len(shots))
        refs = recipe.data.sampler.batch(step)
        for ref, shots in zip(refs, batch["shots"]):
            assert ref.index not in shots
    assert seen_k == {1, 2, 3}  # shots_zero_prob 0: never none; k uniform in 1..3
    val = {v.name: v for v in recipe.val_sets}
    assert set(val) == {"val_instances", "val_shots"}
    assert all(len(r.shots) == 3 for r in val["val_shots"].refs) and all(not r.shots for r in val["val_instances"].refs)


def test_sft_with_examples_trains_the_conditioner_and_records_it(world, tmp_path):
    from text2lora.api import T2L
    from text2lora.examples import Example, example_from_instance, shuffled_outputs
    from text2lora.train.sft import SFTRecipe

    model_dir, library = world
    cfg = build_config("sft", config(model_dir, library, steps=30, eval_every=15, save_every=15))
    recipe = SFTRecipe(cfg)
    before = recipe.evaluate(recipe.hypernet)
    assert before["val_shots"] == pytest.approx(before["val_instances"], rel=1e-5)  # zero-init conditioner
    train(recipe, cfg.loop, tmp_path / "run", config_to_dict(cfg), progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_shots" in r]
    assert [r["step"] for r in evals] == [0, 15, 30] and evals[-1]["val_shots"] < evals[0]["val_shots"]

    t2l = T2L.load(tmp_path / "run" / "best")
    assert t2l.max_examples == 4 and t2l.meta.hypernet.examples.pooling == "attention"
    assert t2l.hypernet.examples.out.weight.abs().sum() > 0  # training moved it off its zero init
    shots = [example_from_instance(i) for i in recipe.library.instances("charlie", "train")[:3]]
    delta = lambda w: torch.cat([b.flatten() for _, b in w.factors.values()])  # noqa: E731
    plain, real = delta(t2l.generate(SAME)), delta(t2l.generate(SAME, examples=shots))
    assert not torch.allclose(real, plain)
    mixed = [Example("cat", "alpha"), Example("dog", "bravo"), Example("sun", "delta")]
    assert not torch.allclose(delta(t2l.generate(SAME, examples=shuffled_outputs(mixed))),
                              delta(t2l.generate(SAME, examples=mixed)))  # the pairing matters, not only the set
    torch.testing.assert_close(delta(t2l.generate(SAME, examples=[])), plain)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_the_conditioner_learns_tasks_that_only_examples_tell_apart(pooling):
    """Four tasks, one description: the target adapter of each task is reachable only through its examples."""
    from text2lora.config import ExamplesConfig, HyperNetConfig
    from text2lora.hypernet import build_hypernetwork

    torch.manual_seed(0)
    shapes = {"q_proj": (8, 8)}
    cfg = HyperNetConfig(latent=16, head_in=32, dropout=0.0, examples=ExamplesConfig(max_examples=4, pooling=pooling,
                                                                                       hidden=32))
    net = build_hypernetwork(cfg, encoder_dim=12, n_layers=1, shapes=shapes, seed=0)
    targets = torch.randn(4, 8, 8)  # task t's B
    task_outputs = torch.nn.functional.normalize(torch.randn(4, 12), dim=-1)  # what task t's outputs look like
    desc = torch.nn.functional.normalize(torch.randn(1, 12), dim=-1)

    def sample(n: int, k: int = 3):
        tasks = torch.randint(0, 4, (n,))
        inputs = torch.nn.functional.normalize(torch.randn(n, k, 12), dim=-1)
        outputs = task_outputs[tasks][:, None] + 0.1 * torch.randn(n, k, 12)
        return tasks, torch.stack([inputs, outputs], 2), torch.ones(n, k, dtype=torch.bool)

    def error(tasks, feats, mask):
        b = net(desc.expand(len(tasks), -1), (feats, mask))["q_proj"][1][:, 0]
        return (b - targets[tasks]).pow(2).mean()

    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        loss = error(*sample(32))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        tasks, feats, mask = sample(256)
        with_examples = float(error(tasks, feats, mask))
        without = float(error(tasks, feats, torch.zeros_like(mask)))
    blend = float(targets.var(0, unbiased=False).mean())  # the best any one adapter for all four tasks can do
    assert without > 0.8 * blend
    assert with_examples < 0.2 * blend, (with_examples, blend)


def test_a_description_only_checkpoint_seeds_a_run_with_examples(world, tmp_path):
    from text2lora.api import T2L
    from text2lora.examples import Example
    from text2lora.train.sft import SFTRecipe

    model_dir, library = world
    plain_cfg = config(model_dir, library, steps=4, eval_every=4, save_every=4)
    del plain_cfg["hypernet"]["examples"]
    cfg = build_config("sft", plain_cfg)
    train(SFTRecipe(cfg), cfg.loop, tmp_path / "plain", config_to_dict(cfg), progress=False)
    seeded = config(model_dir, library, steps=1)
    seeded["init_checkpoint"] = str(tmp_path / "plain" / "final")
    recipe = SFTRecipe(build_config("sft", seeded))
    assert recipe.hypernet.max_examples == 4
    old = T2L.load(tmp_path / "plain" / "final")
    new = T2L(recipe.hypernet, recipe.meta, encoder=old.encoder)
    a = old.generate(SAME).factors["q_proj"][1]
    b = new.generate(SAME, examples=[Example("cat", "tac")]).factors["q_proj"][1]
    torch.testing.assert_close(a, b)  # the fresh conditioner adds nothing yet


def test_shots_only_samples_train_on_the_examples_alone(world):
    """data.shots_only_prob: some samples with examples get the neutral description instead of their own, never a
    sample without examples; the validation gains the same examples without the description."""
    from text2lora.examples import EXAMPLES_ONLY_DESCRIPTION
    from text2lora.train.sft import SFTRecipe

    raw = config(*world)
    raw["data"].update(shots_zero_prob=0.3, shots_only_prob=0.5)
    recipe = SFTRecipe(build_config("sft", raw))
    neutral = with_shots = 0
    for step in range(30):
        batch = recipe.data.batch(step)
        for description, shots in zip(batch["description"], batch["shots"]):
            if description == EXAMPLES_ONLY_DESCRIPTION:
                assert shots  # the examples alone: never no examples and no description
                neutral += 1
            with_shots += bool(shots)
    assert 0.3 < neutral / with_shots < 0.7
    assert EXAMPLES_ONLY_DESCRIPTION in recipe.data.all_descriptions()
    val = {v.name: v for v in recipe.val_sets}
    assert set(val) == {"val_instances", "val_shots", "val_shots_only"}
    assert [(r.task, r.index, r.shots) for r in val["val_shots_only"].refs] == \
        [(r.task, r.index, r.shots) for r in val["val_shots"].refs]
    assert {r.description for r in val["val_shots_only"].refs} == {EXAMPLES_ONLY_DESCRIPTION}
    metrics = recipe.evaluate(recipe.hypernet)
    assert set(metrics) >= {"val_instances", "val_shots", "val_shots_only"}

    raw["data"]["shots_only_prob"] = 0.0  # off: the stream is the one runs had before the option
    plain = SFTRecipe(build_config("sft", raw))
    assert EXAMPLES_ONLY_DESCRIPTION not in plain.data.all_descriptions()
    assert all(EXAMPLES_ONLY_DESCRIPTION not in plain.data.batch(s)["description"] for s in range(10))


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_shots_only_prob_out_of_range_is_a_clear_error(value):
    from text2lora.errors import Text2LoraError
    from text2lora.train.config import DataConfig

    with pytest.raises(Text2LoraError, match="data.shots_only_prob must be in"):
        DataConfig(shots_only_prob=value)


def test_shots_only_prob_without_examples_conditioning_is_a_clear_error(world):
    from text2lora.errors import Text2LoraError
    from text2lora.train.sft import SFTRecipe

    raw = config(*world)
    del raw["hypernet"]["examples"]
    raw["data"]["shots_only_prob"] = 0.5
    with pytest.raises(Text2LoraError, match="needs hypernet.examples"):
        SFTRecipe(build_config("sft", raw))


def test_gen_val_also_scores_the_adapters_written_with_examples(world, tmp_path):
    """A hypernetwork that reads examples is validated by generation twice: description only (gen_score, which
    chooses best/) and with gen_val.shots examples a task (t2l+shots rows; the shots text2lora eval gives icl3)."""
    from text2lora.eval.tasks import select_library_tasks
    from text2lora.examples import example_from_instance
    from text2lora.train.gen_val import read_gen_val

    model_dir, library = world
    raw = config(model_dir, library, steps=4, eval_every=4, save_every=4)
    raw["gen_val"] = {"tasks": "all", "instances": 2, "max_new_tokens": 3, "shots": 2}
    cfg = build_config("sft", raw)
    from text2lora.train.sft import SFTRecipe

    recipe = SFTRecipe(cfg, run_dir=tmp_path / "run")
    assert recipe.gen_val.examples == [[example_from_instance(i) for i in t.shots(0, 2, 0)]
                                       for t in select_library_tasks(recipe.library, "all", None, 2)]
    train(recipe, cfg.loop, tmp_path / "run", config_to_dict(cfg), progress=False)
    rows = read_gen_val(tmp_path / "run")
    assert [(r["step"], r["model"]) for r in rows] == [(0, "base"), (0, "t2l"), (0, "t2l+shots"), (4, "t2l"),
                                                       (4, "t2l+shots")]
    assert set(rows[2]["tasks"]) == set(ANSWERS)
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    final = [m for m in metrics if "gen_shots_score" in m][-1]
    assert final["step"] == 4 and 0 <= final["gen_shots_score"] <= 1 and "gen_shots_copy_rate" in final

    raw["gen_val"]["shots"] = 0  # off: no t2l+shots rows
    recipe = SFTRecipe(build_config("sft", raw), run_dir=tmp_path / "off")
    assert recipe.gen_val.examples is None
