"""How fast is multiple-choice scoring? Prints a Markdown table; never part of the test run.

On the bundled model and the multiple-choice tasks of the prepared library, the seconds to score --instances test
instances of each task (plain prompt, and the 3-shot ICL prompt), three ways, in one run:
  * every option in full, ``--batch`` option sequences per padded batch (how the evaluation scored until
    shared prompts),
  * every option in full, the batch split into length groups,
  * shared prompt: each instance's prompt runs once, its key/value cache is copied to its options (the default),
and the largest difference in mean log-probability from the first way (the three must agree).

    python benchmarks/eval_speed.py [--tasks a,b] [--instances 8] [--batch 16] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from text2lora.data.library import TaskLibrary
from text2lora.data.prompts import collate
from text2lora.eval.config import EvalSettings
from text2lora.eval.methods import ICL, PLAIN, Unit
from text2lora.eval.scoring import build_request, shared_prompt_option_logprobs
from text2lora.eval.tasks import select_library_tasks
from text2lora.models.base import load_base_model
from text2lora.models.bundled import BUNDLED_BASE
from text2lora.train.losses import GROUP_OVERHEAD_POSITIONS, grouped_completion_loss

DEFAULT_TASKS = "abstract_narrative_understanding.4_distractors,logic_grid_puzzle,penguins_in_a_table"


@torch.inference_mode()
def per_option(model, pad_id: int, options: list[list[dict]], batch: int, overhead: float) -> list[float]:
    flat = [o for opts in options for o in opts]
    out: list[float] = []
    for start in range(0, len(flat), batch):
        enc = collate(flat[start:start + batch], pad_id, padding_side="left")
        enc = {k: v for k, v in enc.items() if torch.is_tensor(v)}
        out += (-grouped_completion_loss(model, enc, overhead=overhead)).tolist()
    return out


@torch.inference_mode()
def shared(model, pad_id: int, options: list[list[dict]], batch: int) -> list[float]:
    out: list[float] = []
    for start in range(0, len(options), batch):
        out += [m for pairs in shared_prompt_option_logprobs(model, pad_id, options[start:start + batch], None)
                for m, _ in pairs]
    return out


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help="multiple-choice library tasks, comma-separated")
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="option sequences (or shared prompts) per batch")
    parser.add_argument("--library", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    library = TaskLibrary.load(args.library)
    tasks = [t for t in select_library_tasks(library, args.tasks, None, args.instances) if t.metric == "multiple_choice"]
    if not tasks:
        raise SystemExit(f"none of {args.tasks} is a multiple-choice task of {library.root}")
    model, tok = load_base_model(BUNDLED_BASE)
    settings = EvalSettings(max_instances=args.instances)
    print(f"{args.instances} instances per task, batch {args.batch}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    print("| task | prompt | options | full, one padded batch (s) | full, length groups (s) | shared prompt (s) "
          "| speed-up | max diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    totals = [0.0, 0.0, 0.0]
    for etask in tasks:
        for prompt in (PLAIN, ICL):
            unit = Unit("bench", "", etask.name, None, prompt)
            options = build_request(tok, etask, unit, settings).options
            padded_s, ref = timed(lambda: per_option(model, tok.pad_token_id, options, args.batch, float("inf")))
            grouped_s, grouped = timed(
                lambda: per_option(model, tok.pad_token_id, options, args.batch, GROUP_OVERHEAD_POSITIONS))
            shared_s, fast = timed(lambda: shared(model, tok.pad_token_id, options, args.batch))
            diff = max(max(abs(a - b) for a, b in zip(ref, fast)), max(abs(a - b) for a, b in zip(ref, grouped)))
            for i, s in enumerate((padded_s, grouped_s, shared_s)):
                totals[i] += s
            n = sum(len(o) for o in options)
            print(f"| {etask.name} | {prompt} | {n} | {padded_s:.1f} | {grouped_s:.1f} | {shared_s:.1f} "
                  f"| {padded_s / shared_s:.1f}x | {diff:.1e} |")
    print(f"| **all** | | | {totals[0]:.1f} | {totals[1]:.1f} | {totals[2]:.1f} | {totals[0] / totals[2]:.1f}x | |")


if __name__ == "__main__":
    main()
