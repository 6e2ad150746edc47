"""How much a T2L checkpoint's adapters depend on the description, without running the base model.

For the seen and unseen evaluation tasks of a quality run (``tasks.json``) it generates one adapter per task from
the task's description and one from a random string of the same shape (the first pick of the eval's ``train`` and
``random`` groups, same seed), then reports, in the Frobenius norm of the full update dW = B·A over every layer
and module, relative to the mean ||dW||:

* spread: the mean distance between the adapters of two different tasks (0: one adapter for everything);
* cosine: the mean cosine similarity of two different tasks' dW;
* aligned vs random: the mean distance between a task's adapter and its random-string adapter.

A checkpoint that writes task-specific adapters has a large spread and a large aligned-vs-random distance; one that
writes a general adapter has both small. Seconds on a CPU.

    python benchmarks/description_spread.py --tasks docs/quality/small/tasks.json [--checkpoint DIR] [--out F.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def gram(weights_a, weights_b) -> torch.Tensor:
    """``G[i, j] = <dW_i, dW_j>`` summed over layers and modules, from the rank-r factors (never forming dW)."""
    total = 0.0
    for m, (a1, b1) in weights_a.factors.items():
        a2, b2 = weights_b.factors[m]  # a (N, L, r, d_in), b (N, L, d_out, r)
        bb = torch.einsum("iLor,jLos->ijLrs", b1, b2)  # B_i^T B_j
        aa = torch.einsum("jLsd,iLrd->ijLsr", a2, a1)  # A_j A_i^T
        total = total + torch.einsum("ijLrs,ijLsr->ij", bb, aa)
    return total


def spread_stats(t2l, descriptions: list[str], randoms: list[str]) -> dict[str, float]:
    aligned, rand = t2l.generate(descriptions), t2l.generate(randoms)
    g_aa, g_rr, g_ar = gram(aligned, aligned), gram(rand, rand), gram(aligned, rand)
    norms = g_aa.diagonal().clamp(min=0).sqrt()
    scale = norms.mean()
    d2 = g_aa.diagonal()[:, None] + g_aa.diagonal()[None, :] - 2 * g_aa
    n = len(descriptions)
    off = ~torch.eye(n, dtype=torch.bool)
    spread = d2.clamp(min=0).sqrt()[off].mean() / scale if n > 1 else torch.tensor(float("nan"))
    ar = (g_aa.diagonal() + g_rr.diagonal() - 2 * g_ar.diagonal()).clamp(min=0).sqrt().mean() / scale
    cosine = (g_aa / (norms[:, None] * norms[None, :]).clamp(min=1e-12))[off].mean() if n > 1 else torch.tensor(1.0)
    return {"tasks": n, "mean_norm": float(scale), "spread": float(spread), "cosine": float(cosine),
            "aligned_vs_random": float(ar)}


def main(argv: list[str] | None = None) -> int:
    from text2lora.api import T2L
    from text2lora.data.library import TaskLibrary, default_library_dir
    from text2lora.errors import Text2LoraError
    from text2lora.eval.methods import DescriptionGroups

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", required=True, help="a quality run's tasks.json (seen_eval, unseen_eval)")
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="T2L checkpoint directory (repeatable; default: the shipped one)")
    parser.add_argument("--library", default=str(default_library_dir()))
    parser.add_argument("--seed", type=int, default=0, help="the eval's seed (picks the random strings)")
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    try:
        chosen = json.loads(Path(args.tasks).read_text())
        lib = TaskLibrary.load(Path(args.library))
        rows = []
        for ckpt in args.checkpoint or [None]:
            t2l = T2L.load(ckpt)
            for split in ("seen_eval", "unseen_eval"):
                tasks = [lib.task(name) for name in chosen[split]]
                groups = DescriptionGroups(tasks, n=1, seed=args.seed)  # the eval's own picks
                descriptions = [groups.pick("train", t)[0] for t in tasks]
                randoms = [groups.pick("random", t)[0] for t in tasks]
                with torch.inference_mode():
                    stats = spread_stats(t2l, descriptions, randoms)
                rows.append({"checkpoint": str(ckpt or "shipped"), "split": split.split("_")[0], **stats})
    except (OSError, ValueError, KeyError, Text2LoraError) as e:
        print(f"description_spread: {e}", file=sys.stderr)
        return 2
    lines = ["| checkpoint | tasks | n | mean ‖dW‖ | spread between tasks | cosine between tasks "
             "| aligned vs random |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['checkpoint']} | {r['split']} | {r['tasks']} | {r['mean_norm']:.3g} | {r['spread']:.3f} "
                     f"| {r['cosine']:.3f} | {r['aligned_vs_random']:.3f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n\n(distances relative to the mean ||dW||; "
                                  "`benchmarks/description_spread.py`)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
