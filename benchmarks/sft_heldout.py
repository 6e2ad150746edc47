"""Validation losses of a T2L-SFT checkpoint against its start (bias-HyperInit = the base model), on held-out
instances and on held-out descriptions (those ``text2lora data describe`` wrote after or apart from training).

    python benchmarks/sft_heldout.py --config docs/runs/sft-run1/config.yaml --checkpoint runs/sft-run1/best

Uses the training recipe's own validation sets, rebuilt from the library as it is now; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json

import torch

from text2lora.checkpoint import load_checkpoint
from text2lora.train.config import load_config
from text2lora.train.sft import SFTRecipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config("sft", args.config)
    recipe = SFTRecipe(cfg)
    trained, _ = load_checkpoint(args.checkpoint)
    start = recipe.hypernet.eval()  # freshly built: bias-HyperInit, i.e. the base model
    rows = {"start (bias-HyperInit = base model)": recipe.evaluate(start), "trained": recipe.evaluate(trained)}
    sizes = {v.name: (len({r.task for r in v.refs}), len(v.refs)) for v in recipe.val_sets}
    names = [v.name for v in recipe.val_sets]
    print("| hypernetwork | " + " | ".join(f"{n} ({sizes[n][0]} tasks, {sizes[n][1]} examples)" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, metrics in rows.items():
        print(f"| {label} | " + " | ".join(f"{metrics[n]:.3f}" for n in names) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "sizes": sizes, "checkpoint": args.checkpoint}, f, indent=2)


if __name__ == "__main__":
    main()
