"""`text2lora demo`: the main job end to end on the bundled defaults.

A task the shipped hypernetwork never saw (unseen split) is described in plain English; the hypernetwork turns the
description (and, with ``--shots K`` and a checkpoint trained with examples, K worked examples of the task) into a
LoRA in one forward pass; the base model and the adapted model answer a few of the task's test inputs, shown one
above the other with their scores.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer

from text2lora.errors import Text2LoraError

WIDTH = 100
#: Worked examples a demo task offers to ``--shots`` (drawn once, from outside the inputs the demo shows).
MAX_SHOTS = 8


def demo(
    checkpoint: Annotated[Optional[Path], typer.Option(help="Hypernetwork checkpoint (default: the shipped one).")] = None,
    task: Annotated[Optional[str], typer.Option(
        help="A task of the prepared library (`text2lora data list`); default: the bundled unseen demo task.")] = None,
    library: Annotated[Optional[Path], typer.Option(help="Task library for --task (default: $TEXT2LORA_HOME/library).")] = None,
    description: Annotated[Optional[str], typer.Option(
        help="Describe the task in your own words instead of using the task's description.")] = None,
    n: Annotated[int, typer.Option(min=1, max=32, help="How many test inputs to run.")] = 4,
    out: Annotated[Path, typer.Option(help="Where to write the generated PEFT adapter.")] = Path("demo-adapter"),
    max_new_tokens: Annotated[int, typer.Option(min=1, max=256, help="Tokens to generate per answer.")] = 24,
    shots: Annotated[int, typer.Option(min=0, max=MAX_SHOTS, help=(
        "Also give the hypernetwork this many worked examples of the task (drawn from outside the inputs shown). "
        "They shape the adapter and are never put in the prompt. Needs a checkpoint trained with examples "
        "(docs/examples.md)."))] = 0,
) -> None:
    """Describe a task, get a LoRA in one forward pass, and compare the base and the adapted model."""
    from text2lora.api import T2L
    from text2lora.data.prompts import build_prompt
    from text2lora.eval.config import EvalSettings
    from text2lora.generation import generate_texts
    from text2lora.models.base import load_base_model

    name, split, source, task_description, instances, offered = _load_task(task, library, n)
    description = description if description is not None else task_description
    if not description.strip():
        raise Text2LoraError("the description is empty")
    t2l = T2L.load(checkpoint)
    t2l.require_examples(shots)
    if shots > len(offered):
        hint = "; name a library task with --task" if task is None else ""
        raise Text2LoraError(f"--shots {shots}: {name} offers {len(offered)} worked examples outside the inputs "
                             f"shown{hint}")
    examples = offered[:shots] or None
    if not t2l.meta.trained:
        print("NOTE: this checkpoint is untrained (freshly initialised). Its adapters are exact no-ops\n"
              "      (dW = 0 by bias-HyperInit): the base and adapted answers below will match.\n")
    trained_on = set(t2l.meta.info.get("tasks", []) or [])
    seen_note = ("the hypernetwork was trained on this task" if name in trained_on
                 else "the hypernetwork never saw this task in training")
    print(f"task: {name} ({split or 'user'} split; {seen_note})\nsource: {source}")
    print(_wrap("description: ", description) + "\n")
    for i, ex in enumerate(examples or [], 1):
        print(_wrap(f"example {i} in:  ", ex.input, max_lines=2) + "\n" + _wrap(f"example {i} out: ", ex.output, max_lines=2))
    if examples:
        print(f"(these {len(examples)} examples shape the adapter; they are not put in the prompt)\n")

    start = time.perf_counter()
    t2l.encoder  # load the text encoder once, outside the timed pass
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    lora = t2l.generate(description, examples=examples)
    gen_ms = (time.perf_counter() - start) * 1e3
    path = t2l.save_adapter(description, out, examples=examples)
    what = "the description and the examples" if examples else "the description"
    print(f"adapter generated in {gen_ms:.0f} ms (encoding {what} and one hypernetwork pass; loading "
          f"the encoder took {load_s:.1f} s more, once); PEFT adapter written to {path}\n")

    model, tokenizer = load_base_model(t2l.meta.base_model)
    budget = EvalSettings().max_prompt_tokens  # the evaluation harness's prompt budget
    prompts = [build_prompt(tokenizer, inst, max_prompt_tokens=budget).input_ids for inst in instances]
    base = generate_texts(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    adapted = generate_texts(model, tokenizer, prompts, lora=lora, max_new_tokens=max_new_tokens)

    _print_comparison(instances, base, adapted)
    sys.stdout.flush()


def _print_comparison(instances, base: list[str], adapted: list[str]) -> None:
    """Each input with its reference and both answers scored, then the averages."""
    from text2lora.eval.metrics import exact_match, rouge_l

    totals = {"base": [0.0, 0.0], "adapted": [0.0, 0.0]}
    for i, (inst, b, a) in enumerate(zip(instances, base, adapted), 1):
        refs = inst.references or [inst.output]
        print(f"--- example {i}/{len(instances)} " + "-" * 60)
        print(_wrap("input:     ", inst.input, max_lines=4))
        print(_wrap("reference: ", refs[0], max_lines=2))
        for key, label, pred in (("base", "base:      ", b), ("adapted", "adapted:   ", a)):
            em = max(exact_match(pred, r) for r in refs)
            rl = max(rouge_l(pred, r) for r in refs)
            totals[key][0] += em / len(instances)
            totals[key][1] += rl / len(instances)
            print(_wrap(label, pred, max_lines=3) + f"\n{'':11}[exact match {em:.0f}, ROUGE-L {rl:.2f}]")
    print("-" * 80)
    print(f"{'':<28} {'exact match':>12} {'ROUGE-L':>9}")
    for key, label in (("base", "base model"), ("adapted", "with the generated adapter")):
        em, rl = totals[key]
        print(f"{label:<28} {em:>12.2f} {rl:>9.2f}")
    print(f"({len(instances)} inputs; the committed quality report scores many more: docs/quality/)")


def _load_task(task: str | None, library: Path | None, n: int):
    """(name, split, source, description, instances, examples): a library task, or the bundled demo task. The
    examples (up to :data:`MAX_SHOTS`) come from outside the instances shown."""
    from text2lora.data.library import TaskLibrary
    from text2lora.data.task import Instance
    from text2lora.examples import check_examples

    if task is not None:
        lib = TaskLibrary.load(library)
        t = lib.task(task)
        instances = lib.instances(t.name, "test")[:n] or lib.instances(t.name)[:n]
        if not instances:
            raise Text2LoraError(f"task {t.name} has no instances")
        return t.name, t.split, f"{t.origin}: {t.name}", t.description, instances, task_examples(lib, t.name, n)
    data = json.loads(resources.files("text2lora").joinpath("demo_task.json").read_text(encoding="utf-8"))
    instances = [Instance.from_json(x) for x in data["instances"]][:n]
    examples = check_examples(data.get("shots", []), limit=MAX_SHOTS, where="the demo task's examples")
    return (data["task"], data["split"], f"{data['source']} ({data['license']})", data["description"], instances,
            examples)


def task_examples(lib, name: str, n: int) -> list:
    """Up to :data:`MAX_SHOTS` worked examples of library task ``name`` from outside its first ``n`` test
    instances, drawn as ``text2lora eval`` draws icl3's shots (same seed; ``scripts/make_demo_task.py`` writes these
    into the bundled demo task)."""
    from text2lora.eval.config import EvalSettings
    from text2lora.eval.tasks import select_library_tasks
    from text2lora.examples import example_from_instance

    if not lib.instances(name, "test"):  # the demo shows the first instances of all splits: none lie outside them
        return []
    etask = select_library_tasks(lib, name, None, n)[0]
    return [example_from_instance(i) for i in etask.shots(0, min(MAX_SHOTS, len(etask.pool)), EvalSettings().seed)]


def _wrap(label: str, text: str, max_lines: int = 6) -> str:
    lines = textwrap.wrap(" ".join(text.split()) or "(empty)", width=WIDTH - len(label)) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: WIDTH - len(label) - 4] + " ..."
    pad = " " * len(label)
    return label + ("\n" + pad).join(lines)
