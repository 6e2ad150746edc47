"""`text2lora eval` on a tiny chat model: every method scores, the cache makes a rerun compute nothing, reports
are written, multiple choice picks the most likely option, per-sample adapter batches equal one-adapter runs,
and bad input (broken task file, adapter or checkpoint for another model, unknown method) fails clearly."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from tests.tiny import build_chat_model, build_library
from text2lora.cli import main
from text2lora.data.library import TaskLibrary, write_index, write_task_instances
from text2lora.data.task import Instance, Task
from text2lora.config import LoraConfig
from text2lora.errors import Text2LoraError
from text2lora.eval import EvalConfig, EvalSettings, evaluate, write_report
from text2lora.lora import LoraWeights, apply_lora, save_peft_adapter
from text2lora.models.targets import discover_targets

MC = "pick"


def add_choice_task(root: Path) -> None:
    """A multiple-choice task beside the fixture's four generation tasks (unseen, its own source)."""
    lib = TaskLibrary.load(root)
    instances = [Instance.choice(w, [w, w[::-1], "zz"], i % 3) for i, w in enumerate(["cat", "dog", "sun", "map", "red", "ink"])]
    write_task_instances(root, MC, instances, ["train"] * 2 + ["test"] * 4)
    task = Task(name=MC, source=MC, definition="Pick the option that matches.", metric="multiple_choice",
                descriptions=["Pick the option that matches."], split="unseen", counts={"train": 2, "test": 4, "total": 6})
    write_index(root, [*lib.tasks, task], meta={"fixture": True}, dropped=[])


def random_adapter(layout, seed: int, scale: float = 0.3) -> LoraWeights:
    g = torch.Generator().manual_seed(seed)
    factors = {s.name: (scale * torch.randn(1, layout.n_layers, 4, s.d_in, generator=g),
                        scale * torch.randn(1, layout.n_layers, s.d_out, 4, generator=g)) for s in layout.targets}
    return LoraWeights(factors, layout, LoraConfig(rank=4, alpha=8.0))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from text2lora.api import init_checkpoint
    from text2lora.config import HyperNetConfig
    from text2lora.encoders import EncoderSpec
    from text2lora.models.base import load_base_model

    root = tmp_path_factory.mktemp("eval-world")
    model_dir = build_chat_model(root / "model")
    library = build_library(root / "library")
    add_choice_task(library)
    model, tok = load_base_model(str(model_dir))
    layout = discover_targets(model.config, ("q_proj", "v_proj"))
    loras = root / "loras"
    for i, name in enumerate(["copy", "reverse", "upper", "_multitask"]):
        save_peft_adapter(random_adapter(layout, i), loras / name, base_model_name_or_path=str(model_dir))
    ckpt = init_checkpoint(root / "t2l", base_model=str(model_dir),
                           encoder=EncoderSpec(kind="base-lm", name=str(model_dir), dim=32),
                           hypernet=HyperNetConfig(latent=16, head_in=32, lora=LoraConfig(rank=4)))
    return {"root": root, "model_dir": model_dir, "library": library, "model": model, "tok": tok, "layout": layout,
            "loras": loras, "t2l": ckpt}


def config(world, tmp_path, **kw) -> EvalConfig:
    settings = EvalSettings(base_model=str(world["model_dir"]), max_instances=3, max_new_tokens=4, max_prompt_tokens=96,
                            icl_max_prompt_tokens=200)
    base = dict(methods=["base"], settings=settings, library=str(world["library"]), cache_dir=str(tmp_path / "cache"),
                batch_size=4, progress=False)
    return EvalConfig(**{**base, **kw})


def run(world, cfg):
    return evaluate(cfg, model=world["model"], tokenizer=world["tok"], echo=lambda s: None)


ALL = ["base", "desc-prompt", "icl3", "multitask-lora", "task-lora", "t2l-sft", "t2l-recon"]


def test_every_method_scores_and_a_rerun_hits_the_cache(world, tmp_path):
    cfg = config(world, tmp_path, methods=ALL, lora_library=str(world["loras"]), t2l_sft=str(world["t2l"]),
                 t2l_recon=str(world["t2l"]), groups=("train", "heldout", "other", "random"))
    first = run(world, cfg)
    labels = {r["label"] for r in first.records}
    assert {"base", "desc-prompt", "icl3", "multitask-lora", "task-lora", "t2l-sft[train]", "t2l-sft[heldout]",
            "t2l-sft[other]", "t2l-sft[random]", "t2l-recon[random]"} <= labels
    assert not any(r["cached"] for r in first.records)
    # task-lora has adapters for copy/reverse/upper only; the others are skipped with a reason
    assert {s["task"] for s in first.skipped if s["method"] == "task-lora"} == {"first", MC}
    for r in first.records:
        assert 0.0 <= r["scores"]["score"] <= 1.0 and r["scores"]["n"] == 3
    mc = [r for r in first.records if r["task"] == MC]
    assert mc and all("accuracy" in r["scores"] for r in mc)
    # a fresh (dW = 0) hypernetwork leaves the base model unchanged
    base = {r["task"]: r["scores"]["score"] for r in first.records if r["label"] == "base"}
    t2l = {r["task"]: r["scores"]["score"] for r in first.records if r["label"] == "t2l-sft[train]"}
    assert t2l == base

    second = run(world, cfg)
    assert all(r["cached"] for r in second.records)
    assert second.timing["cache"]["misses"] == 0
    assert [r["scores"] for r in second.records] == [r["scores"] for r in first.records]


def test_method_groups_override_the_groups_of_one_method(world, tmp_path):
    cfg = config(world, tmp_path, methods=["t2l-sft", "t2l-recon"], t2l_sft=str(world["t2l"]),
                 t2l_recon=str(world["t2l"]), groups=("train", "random"), method_groups={"t2l-recon": ("train",)})
    labels = {r["label"] for r in run(world, cfg).records}
    assert labels == {"t2l-sft[train]", "t2l-sft[random]", "t2l-recon[train]"}


def test_a_changed_adapter_or_setting_recomputes_only_what_changed(world, tmp_path):
    loras = tmp_path / "loras"
    for name in ("copy", "reverse"):
        save_peft_adapter(random_adapter(world["layout"], 10), loras / name, base_model_name_or_path="x")
    cfg = config(world, tmp_path, methods=["base", "task-lora"], lora_library=str(loras))
    run(world, cfg)
    save_peft_adapter(random_adapter(world["layout"], 11), loras / "copy", base_model_name_or_path="x")
    again = run(world, cfg)
    fresh = {(r["label"], r["task"]) for r in again.records if not r["cached"]}
    assert fresh == {("task-lora", "copy")}
    cfg2 = config(world, tmp_path, methods=["base"], settings=EvalSettings(
        base_model=str(world["model_dir"]), max_instances=3, max_new_tokens=5, max_prompt_tokens=96))
    # a longer decoding limit recomputes the generation tasks, not the multiple-choice one
    assert {r["task"] for r in run(world, cfg2).records if not r["cached"]} == {"copy", "reverse", "upper", "first"}


def test_reports_json_markdown_and_png(world, tmp_path):
    cfg = config(world, tmp_path, methods=["base", "t2l-sft"], t2l_sft=str(world["t2l"]), groups=("train", "random"))
    result = run(world, cfg)
    paths = write_report(result, tmp_path / "report")
    data = json.loads(paths["json"].read_text())
    assert data["seed"] == 0 and data["config"]["settings"]["max_instances"] == 3
    assert data["timing"]["total_s"] >= 0 and "base" in data["timing"]["methods"]
    assert set(data["averages"]["base"]) == {"seen", "unseen"}
    assert data["averages"]["base"]["seen"]["of"] == 3 and data["averages"]["base"]["unseen"]["of"] == 2
    assert len(data["records"]) == 5 * 3  # base + two T2L groups, five tasks
    md = paths["markdown"].read_text()
    assert "| base |" in md and "t2l-sft[random]" in md and "| pick | unseen | MC |" in md
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_prompt_tokens_count_what_each_method_sends(world, tmp_path):
    """The report's prompt length per request: the plain prompt for base and T2L (an adapter adds no tokens), the
    description on top for desc-prompt, the shots on top for icl3; counted from the prompts, cached or not."""
    from text2lora.data.prompts import build_prompt

    cfg = config(world, tmp_path, methods=["base", "desc-prompt", "icl3", "t2l-sft"], t2l_sft=str(world["t2l"]),
                 groups=("train",), tasks="unseen")
    first = run(world, cfg)
    tokens = {label: p["mean"] for label, p in first.prompt_tokens.items()}
    assert tokens["t2l-sft[train]"] == tokens["base"] < tokens["desc-prompt"] < tokens["icl3"]
    assert {p["requests"] for p in first.prompt_tokens.values()} == {sum(r["scores"]["n"] for r in first.records
                                                                        if r["label"] == "base")}
    lib = TaskLibrary.load(world["library"])
    base = [r for r in first.records if r["label"] == "base"]
    assert {r["metric"] for r in base} == {"generation", "multiple_choice"}  # both kinds are counted
    counts = [len(build_prompt(world["tok"], inst, max_prompt_tokens=96).input_ids)
              for r in base for inst in lib.instances(r["task"], "test")[:3]]
    assert tokens["base"] == pytest.approx(sum(counts) / len(counts), abs=0.05)
    assert run(world, cfg).prompt_tokens == first.prompt_tokens  # all cached: the same counts
    paths = write_report(first, tmp_path / "report")
    assert json.loads(paths["json"].read_text())["prompt_tokens"]["icl3"]["mean"] == tokens["icl3"]
    assert "## Prompt length" in paths["markdown"].read_text()


def test_choice_scoring_picks_the_most_likely_option(world):
    from text2lora.data.prompts import build_prompt, encode_example
    from text2lora.eval.scoring import choice_scores, shared_prompt_option_logprobs

    model, tok = world["model"], world["tok"]
    insts = [Instance.choice("cat", ["cat", "tac", "a much longer option"], 0),
             Instance.choice("a longer prompt about a dog and a fox", ["dog", "fox"], 1)]
    encodings = [[encode_example(tok, inst, completion=o, max_output_tokens=None) for o in inst.options]
                 for inst in insts]
    adapters = LoraWeights.cat([random_adapter(world["layout"], 3), random_adapter(world["layout"], 4)])
    for lora in (None, adapters):  # no adapter, and a different adapter per instance
        scores = shared_prompt_option_logprobs(model, tok.pad_token_id, encodings, lora)
        # the same numbers from one unpadded forward per option, prompt and option together
        for k, inst in enumerate(insts):
            prompt_len = len(build_prompt(tok, inst).input_ids)
            assert len(scores[k]) == len(inst.options)
            for e, (m, s) in zip(encodings[k], scores[k]):
                ids = torch.tensor([e["input_ids"]])
                with torch.no_grad(), (apply_lora(model, lora.select(k)) if lora else contextlib.nullcontext()):
                    logp = model(ids).logits[0, :-1].log_softmax(-1)
                targets = ids[0, prompt_len:]
                lp = logp[prompt_len - 1:].gather(1, targets[:, None]).squeeze(1)
                assert m == pytest.approx(lp.mean().item(), abs=1e-4)
                assert s == pytest.approx(lp.sum().item(), abs=1e-3)
    mean = [m for m, _ in scores[0]]
    picked = choice_scores([mean], [[s for _, s in scores[0]]], [0])
    assert picked["choices"] == [max(range(3), key=lambda j: mean[j])]
    picked = choice_scores([[-1.0, -0.5, -2.0]], [[-1.0, -3.0, -2.0]], [1])
    assert picked["choices"] == [1] and picked["accuracy"] == 1.0 and picked["accuracy_sum"] == 0.0
    picked = choice_scores([[-1.0, -0.5], [-0.2, -0.9], [-3.0, -1.0]], [[0, 0]] * 3, [1, 1, 1])
    assert picked["per_instance_correct"] == [1.0, 0.0, 1.0] and picked["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="share their prompt"):
        shared_prompt_option_logprobs(model, tok.pad_token_id, [[encodings[0][0], encodings[1][0]]], None)


def test_choice_batches_keep_instances_whole_and_match_one_at_a_time(world):
    from text2lora.eval.scoring import Request, score_requests

    from text2lora.data.prompts import encode_example

    model, tok = world["model"], world["tok"]
    insts = [Instance.choice(w, [w, w[::-1], "other"], 0) for w in ("cat", "dog", "owl")]
    req = Request("multiple_choice", options=[[encode_example(tok, i, completion=o, max_output_tokens=None)
                                               for o in i.options] for i in insts], answers=[0, 0, 0])
    a, b = random_adapter(world["layout"], 1), random_adapter(world["layout"], 2)
    together: dict[int, list] = {}
    score_requests(model, tok, [req, req], [a, b], batch_size=2, max_new_tokens=6, progress=False,
                   on_done=lambda i, s, t: together.__setitem__(i, s["mean_logprob"]))
    for i, w in enumerate((a, b)):
        alone: dict[int, list] = {}
        score_requests(model, tok, [req], [w], batch_size=1, max_new_tokens=6, progress=False,
                       on_done=lambda j, s, t: alone.__setitem__(j, s["mean_logprob"]))
        assert torch.tensor(together[i]) == pytest.approx(torch.tensor(alone[0]), abs=2e-4)
    assert not torch.allclose(torch.tensor(together[0]), torch.tensor(together[1]), atol=1e-3)  # adapters differ


def test_mixed_adapter_batches_equal_one_adapter_runs(world):
    from text2lora.eval.scoring import Request, score_requests

    model, tok = world["model"], world["tok"]
    a, b = random_adapter(world["layout"], 1), random_adapter(world["layout"], 2)
    prompts = [tok.apply_chat_template([{"role": "user", "content": w}], add_generation_prompt=True, tokenize=False)
               for w in ("cat", "dog", "owl")]
    req = Request("generation", prompts=prompts, references=[["x"]] * 3)
    together: dict[int, list[str]] = {}
    score_requests(model, tok, [req, req], [a, b], batch_size=4, max_new_tokens=6, progress=False,
                   on_done=lambda i, s, t: together.__setitem__(i, s["predictions"]))
    for i, w in enumerate((a, b)):
        alone: dict[int, list[str]] = {}
        score_requests(model, tok, [req], [w], batch_size=1, max_new_tokens=6, progress=False,
                       on_done=lambda j, s, t: alone.__setitem__(j, s["predictions"]))
        assert together[i] == alone[0]


def test_user_task_file(world, tmp_path):
    f = tmp_path / "shout.jsonl"
    f.write_text("\n".join(json.dumps({"input": w, "output": w.upper()}) for w in ["cat", "dog", "sun", "owl"]) + "\n")
    cfg = config(world, tmp_path, methods=["base", "icl3", "t2l-sft"], t2l_sft=str(world["t2l"]), task_file=str(f),
                 description="Write the word in capital letters.", groups=("train", "other"))
    result = run(world, cfg)
    assert {r["task"] for r in result.records} == {"shout"}
    assert {r["split"] for r in result.records} == {"user"}
    assert {r["label"] for r in result.records} == {"base", "icl3", "t2l-sft[train]", "t2l-sft[other]"}
    assert next(r for r in result.records if r["label"] == "t2l-sft[train]")["description"].startswith("Write the word")


# ----------------------------------------------------------------------------------------------- bad input
def test_a_task_file_with_broken_lines_names_them(world, tmp_path):
    f = tmp_path / "broken.jsonl"
    f.write_text('{"input": "cat", "output": "CAT"}\n{"input": "dog", "output": \nnot json\n{"output": "x"}\n')
    cfg = config(world, tmp_path, task_file=str(f), description="Shout.")
    with pytest.raises(Text2LoraError, match=r"broken.jsonl:2: not valid JSON.*broken.jsonl:3.*broken.jsonl:4: missing 'input'"):
        run(world, cfg)
    code = main(["eval", "-m", "base", "--task-file", str(f), "--description", "Shout.", "--base-model",
                 str(world["model_dir"]), "--no-cache", "-q"])
    assert code == 2


def test_an_adapter_for_another_base_model_is_refused(world, tmp_path, other_model_dir):
    from transformers import AutoConfig

    other = discover_targets(AutoConfig.from_pretrained(other_model_dir), ("q_proj", "v_proj"))
    save_peft_adapter(random_adapter(other, 0), tmp_path / "wide", base_model_name_or_path=str(other_model_dir))
    with pytest.raises(Text2LoraError, match=r"the adapter .*wide \(made for .*\) does not fit this base model"):
        run(world, config(world, tmp_path, methods=[f"peft:{tmp_path / 'wide'}"]))
    lib = tmp_path / "lib"
    save_peft_adapter(random_adapter(other, 0), lib / "copy", base_model_name_or_path=str(other_model_dir))
    with pytest.raises(Text2LoraError, match="does not fit this base model"):
        run(world, config(world, tmp_path, methods=["task-lora"], lora_library=str(lib)))


def test_a_checkpoint_for_another_base_model_is_refused(world, tmp_path, other_model_dir):
    from text2lora.api import init_checkpoint
    from text2lora.config import HyperNetConfig
    from text2lora.encoders import EncoderSpec

    ckpt = init_checkpoint(tmp_path / "wide-t2l", base_model=str(other_model_dir),
                           encoder=EncoderSpec(kind="one-hot", name="", dim=0, tasks=["a", "b"]),
                           hypernet=HyperNetConfig(latent=16, head_in=32))
    with pytest.raises(Text2LoraError, match=r"was made for .*this base model differs"):
        run(world, config(world, tmp_path, methods=["t2l-sft"], t2l_sft=str(ckpt)))


@pytest.mark.parametrize("argv, message", [
    (["-m", "bsae"], "unknown method 'bsae' (did you mean base?)"),
    (["-m", "lora"], "unknown method 'lora'"),
    (["-m", "t2l-sft"], "t2l-sft needs --t2l-sft CHECKPOINT"),
    (["-m", "task-lora"], "task-lora needs --lora-library DIR"),
    (["-m", "peft:/nonexistent/adapter"], "no such adapter directory"),
    (["-m", "t2l-sft", "--t2l-sft", "/nonexistent"], "not found: /nonexistent"),
    (["-m", "base", "--groups", "train,bogus"], "unknown description group 'bogus'"),
    (["-m", "base", "--tasks", "nosuchtask"], "no task 'nosuchtask'"),
    (["-m", "base", "--method-groups", "t2l-recon"], "write METHOD=GROUP"),
    (["-m", "base", "--method-groups", "t2l-recon=train"], "not among the methods"),
    (["-m", "base", "--method-groups", "base=bogus"], "give groups from"),
    (["-m", "base", "--description", "x"], "give the file too"),
])
def test_cli_errors_are_one_line(world, tmp_path, capsys, argv, message):
    code = main(["eval", *argv, "--library", str(world["library"]), "--base-model", str(world["model_dir"]),
                 "--cache-dir", str(tmp_path / "c"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_end_to_end(world, tmp_path, capsys):
    argv = ["eval", "-m", "base,desc-prompt", "--library", str(world["library"]), "--base-model",
            str(world["model_dir"]), "--max-instances", "2", "--max-new-tokens", "3", "--cache-dir",
            str(tmp_path / "c"), "--report", str(tmp_path / "r"), "-q", "--tasks", "copy,pick"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "base: 2 units, 0 cached, 2 to score" in out and "report:" in out
    assert main(argv) == 0
    assert "base: 2 units, 2 cached, 0 to score" in capsys.readouterr().out
    assert (tmp_path / "r" / "results.png").is_file()
