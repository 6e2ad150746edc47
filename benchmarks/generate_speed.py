"""How fast is description -> adapter? Prints a Markdown table; never part of the test run.

For the L, M and S hypernetworks on the bundled model (SmolLM2-135M-Instruct, q_proj + v_proj, r 8) with the
bundled all-MiniLM-L6-v2 encoder, the median over --runs runs of:
  * one description -> adapter in memory (encode + hypernetwork),
  * one description -> PEFT directory on disk,
  * per description, in a batch of --batch descriptions (in memory),
  * one description + 3 worked examples -> adapter in memory (a hypernetwork with the examples conditioner),
and the ratios one-at-a-time / batched and with examples / description only. Every run uses new descriptions and
examples, so nothing is cached.

    python benchmarks/generate_speed.py [--runs 20] [--batch 64] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from text2lora.api import T2L, init_checkpoint
from text2lora.config import ExamplesConfig, HyperNetConfig, LoraConfig

TEMPLATES = [
    "Classify the sentiment of review number {i} as positive or negative.",
    "Translate sentence {i} from English into French, keeping names unchanged.",
    "Answer grade-school maths word problem {i} with a single number.",
    "Given passage {i}, answer the question with a short span copied from it.",
    "Decide whether hypothesis {i} follows from the premise: entailment, neutral or contradiction.",
]


def descriptions(start: int, n: int) -> list[str]:
    return [TEMPLATES[(start + k) % len(TEMPLATES)].format(i=start + k) for k in range(n)]


def median_ms(fn, runs: int, start: int, per: int = 1) -> float:
    fn(start - per)  # warm-up
    times = []
    for r in range(runs):
        t0 = time.perf_counter()
        fn(start + r * per)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def shots(start: int, k: int = 3) -> list[dict[str, str]]:
    return [{"input": f"Review {start}-{j}: the plot was {'dull' if j % 2 else 'moving'} and long.",
             "output": "negative" if j % 2 else "positive"} for j in range(k)]


def bench_variant(variant: str, root: Path, runs: int, batch: int) -> dict[str, float]:
    ckpt = init_checkpoint(root / f"t2l-{variant}", variant=variant)
    t2l = T2L.load(ckpt)
    ex_ckpt = init_checkpoint(root / f"t2l-{variant}-examples", variant=variant,
                              hypernet=HyperNetConfig(variant=variant, lora=LoraConfig(), examples=ExamplesConfig()))
    t2l_ex = T2L.load(ex_ckpt)
    with_examples = median_ms(lambda s: t2l_ex.generate(descriptions(s, 1), examples=shots(s)), runs, 50_000)
    single = median_ms(lambda s: t2l.generate(descriptions(s, 1)), runs, 10_000)
    to_disk = median_ms(lambda s: t2l.save_adapter(descriptions(s, 1)[0], root / f"out-{variant}"), runs, 20_000)
    batched = median_ms(lambda s: t2l.generate(descriptions(s, batch)), runs, 30_000, per=batch) / batch
    encode = median_ms(lambda s: t2l.embed(descriptions(s, 1)), runs, 40_000)
    params = sum(p.numel() for p in t2l.hypernet.parameters())
    return {"params": params, "single": single, "encode": encode, "disk": to_disk, "batched": batched,
            "examples": with_examples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--variants", default="LMS")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.runs} runs\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            rows.append((variant, bench_variant(variant, Path(tmp), args.runs, args.batch)))
    print(f"| variant | params | 1 desc -> adapter in memory (ms) | of which encoder (ms) | 1 desc -> PEFT dir (ms) "
          f"| per desc in a batch of {args.batch} (ms) | one-at-a-time / batched | 1 desc + 3 examples -> adapter "
          f"(ms) | with examples / description only |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for variant, r in rows:
        print(f"| {variant} | {r['params'] / 1e6:.2f}M | {r['single']:.1f} | {r['encode']:.1f} | {r['disk']:.1f} "
              f"| {r['batched']:.2f} | {r['single'] / r['batched']:.1f}x | {r['examples']:.1f} "
              f"| {r['examples'] / r['single']:.2f}x |")


if __name__ == "__main__":
    main()
