"""Time per training step: T2L-SFT (L, M, S) against a plain PEFT LoRA step on the same batch of the bundled
model, in one run; tokens/s with completion-only logits against full-vocabulary logits; and a batch split into
length groups (the default on CPU) against one padded batch. Prints Markdown.

    python benchmarks/train_speed.py [--steps 10] [--batch 8] [--library DIR] [--threads N] [--compile]

``--compile`` adds a row with the base model's decoder layers compiled in place (``torch.compile``, dynamic shapes;
the adapters still enter through forward hooks); the compile time is printed apart and left out of the median.
The training loop offers the same as ``loop.compile: true`` (SFT); a slow test checks that it gives eager mode's
loss and gradients (``pytest -m slow tests/unit/test_train_compile.py``).

Needs a prepared task library (``text2lora data prepare``). Both recipes are the ones ``text2lora train`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from text2lora.data.library import TaskLibrary
from text2lora.models.base import compile_decoder_layers, load_base_model
from text2lora.models.bundled import BUNDLED_BASE
from text2lora.train import losses
from text2lora.train.config import build_config
from text2lora.train.baselines import LoraRecipe
from text2lora.train.sft import SFTRecipe


def time_steps(recipe, batch, steps: int) -> float:
    """Median seconds of forward + backward + AdamW step on one fixed batch."""
    model = recipe.trainable()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss, _ = recipe.loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def loss_variant(*, full_logits: bool = False, one_batch: bool = False):
    """The slower ways the loss used to be computed, for comparison: the LM head over every position instead of
    the completion's, and one padded batch instead of length groups (the shipped recipes do neither)."""
    saved = losses.positions_to_keep, losses.GROUP_OVERHEAD_POSITIONS
    if full_logits:
        losses.positions_to_keep = lambda labels: labels.shape[1]
    if one_batch:
        losses.GROUP_OVERHEAD_POSITIONS = float("inf")
    try:
        yield
    finally:
        losses.positions_to_keep, losses.GROUP_OVERHEAD_POSITIONS = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--library", default=None)
    parser.add_argument("--variants", default="LMS")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="also time T2L-SFT with torch.compile'd layers")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    library = TaskLibrary.load(args.library)
    data = {"library": args.library, "tasks_per_batch": args.batch, "examples_per_task": 1, "max_tasks": args.batch,
            "max_prompt_tokens": 96, "max_output_tokens": 24}
    rows = []
    t2l_model, tok = load_base_model(BUNDLED_BASE)
    peft_base, _ = load_base_model(BUNDLED_BASE)
    lora_recipe = LoraRecipe(build_config("lora", {"data": data}), [t.name for t in library.seen()][: args.batch],
                             library=library, model=peft_base, tokenizer=tok)
    sft_cfg = {v: build_config("sft", {"data": data, "hypernet": {"variant": v}}) for v in args.variants}
    first = SFTRecipe(sft_cfg[args.variants[0]], library=library, base_model=t2l_model, tokenizer=tok)
    batch = first.batch(0, 0, 1)  # the same 8 examples for every contender
    tokens = int(batch["attention_mask"].sum())
    completion = int((batch["labels"] != -100).sum())
    print(f"batch: {len(batch['input_ids'])} examples, {batch['input_ids'].shape[1]} positions, {tokens} tokens "
          f"({completion} completion); torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    peft_s = time_steps(lora_recipe, batch, args.steps)
    rows.append(("PEFT LoRA (completion-only logits)", peft_s))
    with loss_variant(full_logits=True):
        rows.append(("PEFT LoRA (full-vocabulary logits)", time_steps(lora_recipe, batch, args.steps)))
    for v in args.variants:
        recipe = first if v == args.variants[0] else SFTRecipe(sft_cfg[v], library=library, base_model=t2l_model, tokenizer=tok)
        rows.append((f"T2L-SFT {v} (completion-only logits)", time_steps(recipe, batch, args.steps)))
    with loss_variant(one_batch=True):
        rows.append((f"T2L-SFT {args.variants[0]} (one padded batch, no length groups)",
                     time_steps(first, batch, args.steps)))
    with loss_variant(one_batch=True, full_logits=True):
        rows.append((f"T2L-SFT {args.variants[0]} (full-vocabulary logits, one padded batch)",
                     time_steps(first, batch, args.steps)))
    if args.compile:
        t0 = time.perf_counter()
        compile_decoder_layers(t2l_model)  # in place, as loop.compile does it
        time_steps(first, batch, 1)  # compiles
        print(f"torch.compile: first steps (compilation) took {time.perf_counter() - t0:.0f} s\n")
        rows.append((f"T2L-SFT {args.variants[0]} (decoder layers torch.compile'd)", time_steps(first, batch, args.steps)))
    print("| step | median s/step | tokens/s | vs PEFT LoRA step |")
    print("|---|---:|---:|---:|")
    for name, s in rows:
        print(f"| {name} | {s:.3f} | {tokens / s:.0f} | {s / peft_s:.2f}x |")


if __name__ == "__main__":
    main()
