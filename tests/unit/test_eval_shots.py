"""`t2l+shots` in `text2lora eval`: adapters from the description and icl3's very shots, a shuffled-outputs
control, the examples in the cache key, and clear errors for checkpoints that cannot read examples."""

from __future__ import annotations

import pytest
import torch

from tests.tiny import with_examples
from tests.unit.test_eval_harness import config, run, world  # noqa: F401  (the module's fixture)
from text2lora.errors import Text2LoraError
from text2lora.eval.config import check_method_name, split_shots


@pytest.fixture(scope="module")
def shots_ckpt(world):  # noqa: F811
    """The fixture's checkpoint with an examples conditioner, every weight random (so examples change adapters)."""
    return with_examples(world["t2l"], world["root"] / "t2l-shots", max_examples=4)

def test_method_names():
    assert split_shots("t2l+shots") == ("t2l", "+shots")
    assert split_shots("t2l:/x/y+shuffled-shots") == ("t2l:/x/y", "+shuffled-shots")
    assert split_shots("icl3") == ("icl3", None)
    for ok in ("t2l-sft+shots", "t2l+shuffled-shots", "t2l:dir+shots"):
        assert check_method_name(ok) == ok
    for bad, message in (("icl3+shots", "applies to T2L methods"), ("peft:x+shots", "applies to T2L"),
                         ("t2l+shot", "unknown method")):
        with pytest.raises(Text2LoraError, match=message):
            check_method_name(bad)


def test_shots_methods_use_icl3s_shots_and_the_control_shuffles_them(world, shots_ckpt, tmp_path):  # noqa: F811
    from text2lora.eval.methods import DescriptionGroups, build_method
    from text2lora.eval.tasks import select_library_tasks
    from text2lora.data.library import TaskLibrary

    name = f"t2l:{shots_ckpt}"
    cfg = config(world, tmp_path, methods=[name, f"{name}+shots", f"{name}+shuffled-shots"], groups=("train",))
    result = run(world, cfg)
    labels = {r["label"] for r in result.records}
    assert labels == {"t2l:t2l-shots[train]", "t2l:t2l-shots+shots[train]", "t2l:t2l-shots+shuffled-shots[train]"}
    described = {m["name"]: m for m in result.methods}
    assert described["t2l:t2l-shots+shots"]["shots"] == {"mode": "+shots", "k": 3}

    # the examples are icl3's shots for every scored instance, and the control pairs them differently
    etask = next(t for t in select_library_tasks(TaskLibrary.load(world["library"]), "reverse", None, 3))
    real = build_method(f"{name}+shots", cfg, world["model"])
    control = build_method(f"{name}+shuffled-shots", cfg, world["model"])
    ex, sh = real.task_examples(etask), control.task_examples(etask)
    icl = etask.shots(0, 3, cfg.settings.seed)
    assert [e.input for e in ex] == [" ".join(i.input.split()) for i in icl] and all(etask.shots(i, 3, 0) == icl for i in range(3))
    assert [e.input for e in sh] == [e.input for e in ex] and [e.output for e in sh] != [e.output for e in ex]

    # the adapters differ: plain vs examples vs shuffled examples
    groups = DescriptionGroups([etask.task], 1, 0)
    a = real.adapters(real.units(etask, groups, ("train",)))[0].factors["q_proj"][1]
    b = control.adapters(control.units(etask, groups, ("train",)))[0].factors["q_proj"][1]
    plain = build_method(name, cfg, world["model"])
    c = plain.adapters(plain.units(etask, groups, ("train",)))[0].factors["q_proj"][1]
    assert not torch.allclose(a, b) and not torch.allclose(a, c)

    # the examples are part of the cache key: a rerun hits, the control does not share the +shots entries
    again = run(world, cfg)
    assert all(r["cached"] for r in again.records)


def test_a_description_only_checkpoint_cannot_be_scored_with_shots(world, tmp_path):  # noqa: F811
    cfg = config(world, tmp_path, methods=[f"t2l:{world['t2l']}+shots"])
    with pytest.raises(Text2LoraError, match="descriptions only"):
        run(world, cfg)
