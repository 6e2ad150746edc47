"""The quality benchmark: the whole Text-to-LoRA pipeline on the bundled model, from a prepared task library.

    python benchmarks/quality.py --scale quick          # <= ~25 min on 2 CPU cores
    python benchmarks/quality.py --scale small          # the headline, <= ~2.5 h
    python benchmarks/quality.py --scale quick --dry-run
    python benchmarks/quality.py --scale v2 [--split validation] [--t2l-checkpoint DIR]   # the v2 benchmark
    python benchmarks/quality.py --scale v2 --split seen [--t2l-checkpoint DIR]   # v2 seen tasks vs per-task LoRAs

Scale ``v2`` scores a given T2L checkpoint (default: the shipped one) against the baselines on the committed unseen
benchmark v2 (``benchmarks/v2/benchmark.json``, its test side by default): ``select`` checks that the library
scores exactly the committed instances, ``lora:_multitask`` trains the multi-task LoRA on every seen task of the
library, ``eval`` scores base, desc-prompt, icl3, multitask-lora and t2l with its own (``train``), held-out and
random-string descriptions; everything cached, so an interrupted run resumes.

Stages, each cached under ``--work`` (default ``runs/bench-quality-<scale>``) and rerun only when its inputs
change, so an interrupted run resumes (a training stage continues from its last checkpoint):

1. ``select``: pick the evaluation tasks (seen and unseen, one per source family, generation and multiple choice
   balanced), the per-task LoRA ("reconstruction") library tasks and the T2L-SFT / multi-task training tasks;
2. ``lora:<task>``: a per-task PEFT LoRA for each library task (`text2lora train lora --task`);
3. ``lora:_multitask``: one LoRA on all training tasks (`text2lora train lora --multitask`);
4. ``t2l-recon``: T2L trained to reproduce the per-task LoRAs (`text2lora train recon`);
5. ``t2l-sft``: T2L trained end to end on the training tasks (`text2lora train sft`);
6. ``eval``: `text2lora eval` of base, desc-prompt, icl3, multitask-lora, task-lora, t2l-recon, t2l-sft on the
   seen evaluation tasks and unseen tasks; report (JSON, Markdown, PNG) in ``<work>/report``.

``--scale v2 --split seen`` is the "no regression on seen tasks" check, on the committed seen side
(``benchmarks/v2/seen.json``: 15 seen tasks of the library, scored on their held-out test split): ``select-seen``
checks the library against it, ``lora:<task>`` trains each task's per-task LoRA (100 steps, early stopping on its
validation loss), ``lora:_multitask`` is the test side's multi-task LoRA (the same stage: cached, not retrained),
``t2l-recon`` trains T2L-recon on those LoRAs (10,000 steps), and ``eval-seen`` scores base, multitask-lora,
task-lora, t2l-recon and the T2L checkpoint, each with the tasks' own descriptions, into ``<work>/report-seen``.

Seen evaluation tasks are training tasks (their test split is held out); unseen tasks are never trained or tuned on.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stages import Stage, StageRunner  # noqa: E402

from text2lora.paths import sha256_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METHODS = ["base", "desc-prompt", "icl3", "multitask-lora", "task-lora", "t2l-recon", "t2l-sft"]


@dataclass(frozen=True)
class Scale:
    """Sizes of one benchmark scale (times measured on 2 shared CPU cores, SmolLM2-135M)."""

    seen_eval: int  #: seen tasks evaluated (all get a per-task LoRA)
    recon_extra: int  #: more seen tasks in the per-task LoRA library (reconstruction targets only)
    train_tasks: int  #: tasks T2L-SFT and the multi-task LoRA train on (include the library tasks)
    unseen_eval: int  #: unseen tasks evaluated
    lora_steps: int  #: steps per per-task LoRA (batch 8, early stopping)
    multitask_steps: int
    recon_steps: int
    sft_steps: int
    max_instances: int  #: test instances per evaluated task
    groups: str  #: T2L description groups
    expected_minutes: int


SCALES = {
    # sized from a measured run (2 threads, quiet machine): a LoRA or SFT step ~7 s, a 3-shot ICL item ~1.6 s;
    # the same stages as small, too short to mean much: a wiring and ordering check in minutes
    "quick": Scale(seen_eval=3, recon_extra=0, train_tasks=16, unseen_eval=4, lora_steps=16, multitask_steps=24,
                   recon_steps=500, sft_steps=32, max_instances=5, groups="train,random", expected_minutes=25),
    # checks the wiring end to end in minutes; its numbers mean nothing
    "smoke": Scale(seen_eval=2, recon_extra=0, train_tasks=3, unseen_eval=2, lora_steps=2, multitask_steps=2,
                   recon_steps=20, sft_steps=2, max_instances=3, groups="train,random", expected_minutes=10),
    "small": Scale(seen_eval=8, recon_extra=4, train_tasks=48, unseen_eval=10, lora_steps=40, multitask_steps=240,
                   recon_steps=3000, sft_steps=500, max_instances=20, groups="train,heldout,other,random",
                   expected_minutes=140),
}
V2 = Scale(seen_eval=0, recon_extra=0, train_tasks=0, unseen_eval=0, lora_steps=0, multitask_steps=800,
           recon_steps=0, sft_steps=0, max_instances=30, groups="train,heldout,random", expected_minutes=150)
V2_METHODS = ["base", "desc-prompt", "icl3", "multitask-lora", "t2l"]
#: With a checkpoint that reads worked examples (issue 15), the v2 sides also score it given icl3's shots
#: (``t2l+shots``) and the same shots with their outputs shuffled across them (the control), with the tasks' own
#: descriptions only.
V2_SHOT_METHODS = ["t2l+shots", "t2l+shuffled-shots"]
V2_BENCHMARK = REPO / "benchmarks" / "v2" / "benchmark.json"
SEEN = "seen"
#: ``--split seen``: per-task LoRAs of 100 steps (early stopping on the task's validation loss; the timed small run
#: measured ~4 s a step) and T2L-recon of 10,000 steps (the 15 LoRAs are each drawn ~2,700 times at 4 a batch; the
#: small runs reached ~4% dW error at 1,500-2,000 draws a LoRA, ~0.13 s a step); the T2L checkpoint and T2L-recon are
#: scored with the tasks' own (training) descriptions.
V2_SEEN = Scale(seen_eval=0, recon_extra=0, train_tasks=0, unseen_eval=0, lora_steps=100,
                multitask_steps=V2.multitask_steps, recon_steps=10_000, sft_steps=0, max_instances=30, groups="train",
                expected_minutes=170)
V2_SEEN_METHODS = ["base", "multitask-lora", "task-lora", "t2l-recon", "t2l"]
V2_SEEN_FILE = REPO / "benchmarks" / "v2" / "seen.json"
V2_SEEN_SELECTION = "seen-tasks.json"  #: in the work dir, beside the test/validation sides' tasks.json
MAX_NEW_TOKENS = 24
#: T2L-recon is scored with its training descriptions only: it learns to reproduce the LoRA of each description
#: it was trained on (the paper's reconstruction setting); T2L-SFT gets every group of the scale.
RECON_GROUPS = "train"
MIN_TRAIN = 40  #: a seen task needs this many training instances to get a per-task LoRA
MIN_TEST = 4  #: and this many test instances to be evaluated


# ------------------------------------------------------------------------------------------------ selection
def _spread(tasks: list, n: int, rng: random.Random, exclude_sources: set[str] = frozenset()) -> list:
    """Up to ``n`` tasks, one per source family first, alternating generation and multiple choice."""
    by_metric: dict[str, list] = {}
    for t in sorted(tasks, key=lambda t: t.name):
        by_metric.setdefault(t.metric, []).append(t)
    for group in by_metric.values():
        rng.shuffle(group)
    picked, sources = [], set(exclude_sources)
    for allow_repeat in (False, True):
        queues = [list(q) for q in by_metric.values()]
        while len(picked) < n and any(queues):
            for q in queues:
                while q and len(picked) < n:
                    t = q.pop(0)
                    if t in picked or (t.source in sources and not allow_repeat):
                        continue
                    picked.append(t)
                    sources.add(t.source)
                    break
    return picked


def _spread_described(tasks: list, n: int, rng: random.Random, exclude_sources: set[str] = frozenset()) -> list:
    """Like :func:`_spread`, taking tasks that have generated descriptions (training and held-out ones, from
    `text2lora data describe`) first: T2L learns from, and the description groups score with, those."""
    picked = _spread([t for t in tasks if t.heldout_descriptions], n, rng, exclude_sources)
    if len(picked) < n:
        rest = [t for t in tasks if t not in picked]
        picked += _spread(rest, n - len(picked), rng, set(exclude_sources) | {t.source for t in picked})
    return picked


def select_tasks(library_dir: Path, scale: Scale, seed: int) -> dict[str, list[str]]:
    from text2lora.data.library import TaskLibrary

    lib = TaskLibrary.load(library_dir)
    rng = random.Random(seed)
    enough = [t for t in lib.seen() if t.counts.get("train", 0) >= MIN_TRAIN and t.counts.get("test", 0) >= MIN_TEST]
    seen_eval = _spread_described(enough, scale.seen_eval, rng)
    extra = _spread_described([t for t in enough if t not in seen_eval], scale.recon_extra, rng,
                    {t.source for t in seen_eval})
    lora_tasks = seen_eval + extra
    rest = [t for t in lib.seen() if t not in lora_tasks and t.counts.get("train", 0) >= 8]
    train = lora_tasks + _spread_described(rest, max(0, scale.train_tasks - len(lora_tasks)), rng,
                                 {t.source for t in lora_tasks})
    unseen = _spread_described([t for t in lib.unseen() if t.counts.get("test", 0) >= MIN_TEST],
                               scale.unseen_eval, rng)
    names = lambda ts: sorted(t.name for t in ts)  # noqa: E731
    return {"seen_eval": names(seen_eval), "unseen_eval": names(unseen), "lora_tasks": names(lora_tasks),
            "train_tasks": names(train)}


# --------------------------------------------------------------------------------------------------- stages
def _write_config(path: Path, base: Path, overrides: dict) -> dict:
    import yaml

    data = yaml.safe_load(base.read_text())
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=True))
    return data


def _product(path: Path) -> str | None:
    """Content hash of an upstream stage's output file (None while it does not exist): downstream stages
    rerun when, and only when, what they read changed."""
    return sha256_file(path) if path.is_file() else None


def _has_checkpoints(run: Path) -> bool:
    return run.is_dir() and any((p / "trainer.json").is_file() for p in run.glob("ckpt-*"))


def _task_lora_stages(cli: list[str], tasks: list[str], common: dict, work: Path, lora_lib: Path, steps: int,
                      seed: int) -> list[Stage]:
    """A ``lora:<task>`` stage per task: a per-task PEFT LoRA into ``lora_lib/<task>``, early stopping on the
    task's validation loss."""
    stages = []
    for task in tasks:
        cfg_path = work / "configs" / f"lora-{task}.yaml"
        cfg = _write_config(cfg_path, REPO / "configs" / "smollm2-lora.yaml", {
            **common, "loop.steps": steps, "loop.eval_every": 10, "loop.save_every": 10, "loop.seed": seed})
        run_dir = lora_lib / ".runs" / task
        stages.append(Stage(
            f"lora:{task}", f"per-task LoRA, {steps} steps (early stopping)",
            cli + ["train", "lora", "--task", task, "--config", str(cfg_path), "--out", str(lora_lib)],
            {"config": cfg},
            done=(lora_lib / task / "adapter_config.json").is_file, clean=[lora_lib / task, run_dir],
            resume_args=["--resume"], can_resume=lambda r=run_dir: _has_checkpoints(r)))
    return stages


def _recon_stage(cli: list[str], adapters: dict[str, str | None], common: dict, work: Path, lora_lib: Path,
                 steps: int, seed: int, extra_inputs: dict | None = None) -> Stage:
    """``t2l-recon``: T2L trained to reproduce the per-task LoRAs of ``lora_lib`` (``adapters``: their hashes)."""
    recon_dir = work / "t2l-recon"
    cfg_path = work / "configs" / "recon.yaml"
    cfg = _write_config(cfg_path, REPO / "configs" / "smollm2-recon.yaml", {
        **common, "loop.steps": steps, "loop.eval_every": max(50, steps // 5),
        "loop.save_every": max(50, steps // 5), "loop.seed": seed})
    return Stage(
        "t2l-recon", f"T2L-recon on the {len(adapters)}-task LoRA library, {steps} steps",
        cli + ["train", "recon", "--lora-library", str(lora_lib), "--config", str(cfg_path), "--out", str(recon_dir)],
        {"config": cfg, "adapters": adapters, **(extra_inputs or {})},
        done=(recon_dir / "best" / "t2l_config.json").is_file, clean=[recon_dir],
        resume_args=["--resume"], can_resume=lambda: _has_checkpoints(recon_dir))


def build_stages(args, scale: Scale, work: Path) -> list[Stage]:
    cli = [sys.executable, "-m", "text2lora"]
    library = Path(args.library).resolve()
    index_hash = sha256_file(library / "index.json")
    selection_file = work / "tasks.json"
    stages: list[Stage] = []

    # only what the selection reads: a change to steps or instances must not rerun the stages downstream
    sizes = {k: getattr(scale, k) for k in ("seen_eval", "recon_extra", "train_tasks", "unseen_eval")}
    select_inputs = {"library_index": index_hash, "sizes": sizes, "min_train": MIN_TRAIN, "min_test": MIN_TEST,
                     "seed": args.seed}
    select = Stage(
        "select", "pick evaluation, LoRA-library and training tasks",
        [sys.executable, __file__, "--select-only", "--scale", args.scale, "--library", str(library),
         "--work", str(work), "--seed", str(args.seed)],
        select_inputs, done=selection_file.is_file, clean=[selection_file])
    stages.append(select)
    if not selection_file.is_file() or select.fingerprint != (_record(work, "select") or {}).get("fingerprint"):
        return stages  # the rest is planned once the selection exists (run() calls again)
    chosen = json.loads(selection_file.read_text())
    lora_lib = work / "lora-library"
    common = {"base_model": "bundled:smollm2-135m-instruct", "data.library": str(library)}

    stages += _task_lora_stages(cli, chosen["lora_tasks"], common, work, lora_lib, scale.lora_steps, args.seed)
    adapters = {t: _product(lora_lib / t / "adapter_model.safetensors") for t in chosen["lora_tasks"]}

    cfg_path = work / "configs" / "lora-multitask.yaml"
    cfg = _write_config(cfg_path, REPO / "configs" / "smollm2-lora.yaml", {
        **common, "data.tasks": ",".join(chosen["train_tasks"]), "loop.steps": scale.multitask_steps,
        "loop.eval_every": max(10, scale.multitask_steps // 6), "loop.save_every": max(10, scale.multitask_steps // 6),
        "data.val_tasks": 8, "data.val_instances_per_task": 4, "loop.seed": args.seed})
    run_dir = lora_lib / ".runs" / "_multitask"
    stages.append(Stage(
        "lora:_multitask", f"multi-task LoRA on {len(chosen['train_tasks'])} tasks, {scale.multitask_steps} steps",
        cli + ["train", "lora", "--multitask", "--config", str(cfg_path), "--out", str(lora_lib)],
        {"config": cfg},
        done=(lora_lib / "_multitask" / "adapter_config.json").is_file, clean=[lora_lib / "_multitask", run_dir],
        resume_args=["--resume"], can_resume=lambda r=run_dir: _has_checkpoints(r)))

    recon_dir = work / "t2l-recon"
    stages.append(_recon_stage(cli, adapters, common, work, lora_lib, scale.recon_steps, args.seed))

    sft_dir = work / "t2l-sft"
    cfg_path = work / "configs" / "sft.yaml"
    cfg = _write_config(cfg_path, REPO / "configs" / "smollm2-sft.yaml", {
        **common, "data.tasks": ",".join(chosen["train_tasks"]), "loop.steps": scale.sft_steps,
        "loop.eval_every": max(20, scale.sft_steps // 5), "loop.save_every": max(20, scale.sft_steps // 10),
        "data.val_tasks": 8, "data.val_instances_per_task": 4, "loop.seed": args.seed})
    stages.append(Stage(
        "t2l-sft", f"T2L-SFT on {len(chosen['train_tasks'])} tasks, {scale.sft_steps} steps",
        cli + ["train", "sft", "--config", str(cfg_path), "--out", str(sft_dir)],
        {"config": cfg},
        done=(sft_dir / "best" / "t2l_config.json").is_file, clean=[sft_dir],
        resume_args=["--resume"], can_resume=lambda: _has_checkpoints(sft_dir)))

    report = work / "report"
    eval_tasks = chosen["seen_eval"] + chosen["unseen_eval"]
    methods = args.methods.split(",") if args.methods else METHODS
    command = cli + [
        "eval", "-m", ",".join(methods), "--library", str(library), "--tasks", ",".join(eval_tasks),
        "--lora-library", str(lora_lib), "--t2l-sft", str(sft_dir / "best"), "--t2l-recon", str(recon_dir / "best"),
        "--groups", args.groups or scale.groups,
        *(["--method-groups", f"t2l-recon={RECON_GROUPS}"] if "t2l-recon" in methods else []),
        "--max-instances", str(scale.max_instances), "--max-new-tokens", str(MAX_NEW_TOKENS),
        "--seed", str(args.seed), "--cache-dir", str(work / "eval-cache"), "--report", str(report)]
    stages.append(Stage(
        "eval", f"score {len(methods)} methods on {len(chosen['seen_eval'])} seen + {len(chosen['unseen_eval'])} "
                f"unseen tasks, {scale.max_instances} instances each (cached per method, task, description)",
        command, {"adapters": adapters,
                  "multitask": _product(lora_lib / "_multitask" / "adapter_model.safetensors"),
                  "t2l-recon": _product(recon_dir / "best" / "hypernet.safetensors"),
                  "t2l-sft": _product(sft_dir / "best" / "hypernet.safetensors")},
        done=(report / "results.json").is_file, clean=[report]))
    return stages


def _v2_multitask_stage(args, work: Path, library: Path, cli: list[str]) -> Stage:
    """``lora:_multitask`` of the v2 benchmark: one LoRA on every seen task (one stage for all sides, so it is
    trained once and cached)."""
    lora_lib = work / "lora-library"
    steps = args.multitask_steps or V2.multitask_steps
    every = min(max(10, steps // 8), 250)  # 800 steps: every 100; at most 250, so early stopping acts on a long run
    cfg_path = work / "configs" / "lora-multitask.yaml"
    cfg = _write_config(cfg_path, REPO / "configs" / "smollm2-lora.yaml", {
        "base_model": "bundled:smollm2-135m-instruct", "data.library": str(library), "data.tasks": "seen",
        "loop.steps": steps, "loop.eval_every": every, "loop.save_every": every,
        "data.val_tasks": 24, "data.val_instances_per_task": 8, "loop.seed": args.seed})
    run_dir = lora_lib / ".runs" / "_multitask"
    return Stage(
        "lora:_multitask", f"multi-task LoRA on every seen task, {steps} steps (early stopping)",
        cli + ["train", "lora", "--multitask", "--config", str(cfg_path), "--out", str(lora_lib)],
        {"config": cfg},
        done=(lora_lib / "_multitask" / "adapter_config.json").is_file, clean=[lora_lib / "_multitask", run_dir],
        resume_args=["--resume"], can_resume=lambda: _has_checkpoints(run_dir))


def _v2_eval_command(cli: list[str], args, methods: list[str], library: Path, tasks: list[str], lora_lib: Path,
                     checkpoint: Path | None, extra: list[str], scale: Scale, work: Path, report: Path) -> list[str]:
    """The `text2lora eval` command of a v2 side (``extra``: more options before the groups)."""
    return cli + [
        "eval", "-m", ",".join(methods), "--library", str(library), "--tasks", ",".join(tasks),
        "--lora-library", str(lora_lib), *(["--t2l-checkpoint", str(checkpoint)] if checkpoint else []), *extra,
        "--groups", args.groups or scale.groups, "--max-instances", str(scale.max_instances),
        "--max-new-tokens", str(MAX_NEW_TOKENS), "--seed", str(args.seed), "--cache-dir", str(work / "eval-cache"),
        "--report", str(report)]


def build_v2_stages(args, work: Path) -> list[Stage]:
    """The v2 benchmark: a checkpoint and the baselines on the committed unseen tasks (see the module docstring),
    or on the seen side (``--split seen``: :func:`build_v2_seen_stages`)."""
    if args.split == SEEN:
        return build_v2_seen_stages(args, work)
    cli = [sys.executable, "-m", "text2lora"]
    library = Path(args.library).resolve()
    selection_file = work / "tasks.json"
    select = Stage(
        "select", f"check the committed v2 benchmark ({args.split}) against the library",
        [sys.executable, __file__, "--select-only", "--scale", "v2", "--split", args.split, "--library", str(library),
         "--work", str(work)],
        {"library_index": sha256_file(library / "index.json"), "benchmark": sha256_file(V2_BENCHMARK),
         "split": args.split}, done=selection_file.is_file, clean=[selection_file])
    stages = [select]
    if not selection_file.is_file() or select.fingerprint != (_record(work, "select") or {}).get("fingerprint"):
        return stages
    chosen = json.loads(selection_file.read_text())
    lora_lib = work / "lora-library"
    multitask = _v2_multitask_stage(args, work, library, cli)
    methods = args.methods.split(",") if args.methods else V2_METHODS
    if "multitask-lora" in methods:
        stages.append(multitask)
    checkpoint = Path(args.t2l_checkpoint).resolve() if args.t2l_checkpoint else None
    t2l_dir = checkpoint or REPO / "src" / "text2lora" / "checkpoints" / "default"
    if not args.methods and reads_examples(t2l_dir):
        methods = methods + V2_SHOT_METHODS
    shot_groups = [f"--method-groups={m}=train" for m in methods if m in V2_SHOT_METHODS]
    report = work / f"report-{args.split}"
    command = _v2_eval_command(cli, args, methods, library, chosen["eval"], lora_lib, checkpoint, shot_groups, V2,
                               work, report)
    t2l_weights = t2l_dir / "hypernet.safetensors"
    stages.append(Stage(
        "eval", f"score {len(methods)} methods on {len(chosen['eval'])} unseen {args.split} tasks, "
                f"{V2.max_instances} instances each (cached per method, task, description)",
        command, {"multitask": _product(lora_lib / "_multitask" / "adapter_model.safetensors"),
                  "t2l": _product(t2l_weights), "methods": methods},
        done=(report / "results.json").is_file, clean=[report]))
    return stages


def reads_examples(checkpoint: Path) -> bool:
    """Whether a T2L checkpoint conditions on worked examples (its config's ``hypernet.examples``)."""
    config = checkpoint / "t2l_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("hypernet", {}).get("examples"))


def build_v2_seen_stages(args, work: Path) -> list[Stage]:
    """``--scale v2 --split seen``: per-task LoRAs of the committed seen tasks, T2L-recon on them, and base, the
    v2 multi-task LoRA (the test side's stage: cached, not retrained), each task's own LoRA, T2L-recon and the
    given T2L checkpoint scored on the seen tasks' test instances. Stage names and files are the seen side's own
    (``select-seen``, ``seen-tasks.json``, ``eval-seen``, ``report-seen``): the test and validation sides' records
    are left as they are."""
    cli = [sys.executable, "-m", "text2lora"]
    library = Path(args.library).resolve()
    selection_file = work / V2_SEEN_SELECTION
    select = Stage(
        "select-seen", "check the committed v2 seen side against the library",
        [sys.executable, __file__, "--select-only", "--scale", "v2", "--split", SEEN, "--library", str(library),
         "--work", str(work)],
        {"library_index": sha256_file(library / "index.json"), "seen": sha256_file(V2_SEEN_FILE),
         "min_train": MIN_TRAIN}, done=selection_file.is_file, clean=[selection_file])
    stages = [select]
    if not selection_file.is_file() or select.fingerprint != (_record(work, "select-seen") or {}).get("fingerprint"):
        return stages
    tasks = json.loads(selection_file.read_text())["eval"]
    lora_lib = work / "lora-library"
    methods = args.methods.split(",") if args.methods else V2_SEEN_METHODS
    multitask = _v2_multitask_stage(args, work, library, cli)
    if "multitask-lora" in methods:
        stages.append(multitask)
    common = {"base_model": "bundled:smollm2-135m-instruct", "data.library": str(library)}
    if {"task-lora", "t2l-recon"} & set(methods):
        _refuse_other_adapters(lora_lib, tasks)
        stages += _task_lora_stages(cli, tasks, common, work, lora_lib, V2_SEEN.lora_steps, args.seed)
    adapters = {t: _product(lora_lib / t / "adapter_model.safetensors") for t in tasks}
    recon_dir = work / "t2l-recon"
    # what T2L-recon learns from and both T2Ls are scored with: new descriptions (`text2lora data describe`) rerun them
    descriptions = _descriptions_hash(library, tasks)
    if "t2l-recon" in methods:
        stages.append(_recon_stage(cli, adapters, common, work, lora_lib, V2_SEEN.recon_steps, args.seed,
                                   {"descriptions": descriptions}))
    checkpoint = Path(args.t2l_checkpoint).resolve() if args.t2l_checkpoint else None
    report = work / f"report-{SEEN}"
    recon = (["--t2l-recon", str(recon_dir / "best"), "--method-groups", f"t2l-recon={RECON_GROUPS}"]
             if "t2l-recon" in methods else [])
    command = _v2_eval_command(cli, args, methods, library, tasks, lora_lib, checkpoint, recon, V2_SEEN, work,
                               report)
    t2l_weights = (checkpoint or REPO / "src" / "text2lora" / "checkpoints" / "default") / "hypernet.safetensors"
    stages.append(Stage(
        "eval-seen", f"score {len(methods)} methods on {len(tasks)} seen tasks, {V2_SEEN.max_instances} instances "
                     "each (cached per method, task, description)",
        command, {"adapters": adapters, "multitask": _product(lora_lib / "_multitask" / "adapter_model.safetensors"),
                  "t2l-recon": _product(recon_dir / "best" / "hypernet.safetensors"), "t2l": _product(t2l_weights),
                  "methods": methods, "descriptions": descriptions},
        done=(report / "results.json").is_file, clean=[report]))
    return stages


def _descriptions_hash(library: Path, tasks: list[str]) -> str:
    """A hash of the tasks' training and held-out descriptions in the library."""
    import hashlib

    from text2lora.data.library import TaskLibrary

    lib = TaskLibrary.load(library)
    texts = {t: [lib.task(t).training_descriptions, lib.task(t).heldout_descriptions] for t in tasks}
    return hashlib.sha256(json.dumps(texts, sort_keys=True).encode()).hexdigest()


def _refuse_other_adapters(lora_lib: Path, tasks: list[str]) -> None:
    """T2L-recon learns every per-task adapter in the LoRA library: one that is not a seen task's (left by another
    seen.json) would join the reconstruction targets unnoticed."""
    others = sorted(p.parent.name for p in lora_lib.glob("*/adapter_config.json")
                    if not p.parent.name.startswith((".", "_")) and p.parent.name not in tasks)
    if others:
        raise SystemExit(f"{lora_lib} holds per-task LoRAs of tasks not on the seen side ({', '.join(others)}): "
                         "move them out, T2L-recon would learn them too")


def select_v2(library_dir: Path, split: str) -> dict[str, list[str]]:
    from text2lora.data.library import TaskLibrary
    from text2lora.eval.benchmark import check_benchmark, check_seen

    if split == SEEN:
        seen = json.loads(V2_SEEN_FILE.read_text())
        if seen["rules"]["min_train"] < MIN_TRAIN:
            raise SystemExit(f"{V2_SEEN_FILE} allows tasks with {seen['rules']['min_train']} training instances; "
                             f"a per-task LoRA needs {MIN_TRAIN}")
        return {"eval": check_seen(seen, TaskLibrary.load(library_dir))}
    bench = json.loads(V2_BENCHMARK.read_text())
    return {"eval": check_benchmark(bench, TaskLibrary.load(library_dir), split)}


def _record(work: Path, name: str) -> dict | None:
    try:
        return json.loads((work / "stages" / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def run(args) -> int:
    scale = (V2_SEEN if args.split == SEEN else V2) if args.scale == "v2" else SCALES[args.scale]
    work = Path(args.work or REPO / "runs" / f"bench-quality-{args.scale}").resolve()
    build = (lambda: build_v2_stages(args, work)) if args.scale == "v2" else (lambda: build_stages(args, scale, work))
    library = Path(args.library).resolve()
    if not (library / "index.json").is_file():
        print(f"no task library at {library}: run `text2lora data prepare` first (or pass --library)", file=sys.stderr)
        return 2
    if args.select_only:
        work.mkdir(parents=True, exist_ok=True)
        chosen = select_v2(library, args.split) if args.scale == "v2" else select_tasks(library, scale, args.seed)
        selection = V2_SEEN_SELECTION if args.scale == "v2" and args.split == SEEN else "tasks.json"
        (work / selection).write_text(json.dumps(chosen, indent=2) + "\n")
        for key, names in chosen.items():
            print(f"      {key} ({len(names)}): {', '.join(names)}")
        return 0
    print(f"quality benchmark, scale {args.scale} (expected <= {scale.expected_minutes} min on 2 CPU cores); "
          f"work dir {work}; library {library}")
    if args.threads:  # inherited by every stage; not an input (results do not depend on it)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    runner = StageRunner(work / "stages", force=tuple(args.force), dry_run=args.dry_run)
    started = time.perf_counter()
    stages = build()
    # selection is cheap and the plan depends on it: it runs even in a dry run
    runner.dry_run = False
    runner.run(stages[0], 1, "?")
    runner.dry_run = args.dry_run
    index = 1
    while True:  # replanned before each stage: a stage's inputs include the outputs of the stages before it
        stages = build()
        if index >= len(stages):
            break
        name = stages[index].name
        if (args.only and not any(name.startswith(p) for p in args.only)) or any(name.startswith(p) for p in args.skip):
            index += 1  # another process runs it (--only): left alone, its record untouched
            continue
        runner.run(stages[index], index + 1, len(stages))
        index += 1
    print(f"\nstages (wall {(time.perf_counter() - started) / 60:.1f} min):")
    print("\n".join(runner.summary()))
    report = work / (f"report-{args.split}" if args.scale == "v2" else "report")
    results = report / "results.md"
    if results.is_file() and not args.dry_run:
        from claims import write as write_claims

        text = results.read_text()
        print("\n" + text.split("## Per task")[0].strip())
        print("\n" + write_claims(report))
        print(f"\nreport: {report} (results.json, results.md, results.png, claims.md)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from text2lora.data.library import default_library_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=[*sorted(SCALES), "v2"], default="quick")
    parser.add_argument("--split", choices=["test", "validation", SEEN], default="test",
                        help="v2: which side of the committed benchmark to score (validation: for decisions; seen: "
                             "the seen tasks of benchmarks/v2/seen.json against per-task LoRAs and T2L-recon)")
    parser.add_argument("--t2l-checkpoint", default=None, help="v2: the T2L checkpoint to score (default: shipped)")
    parser.add_argument("--multitask-steps", type=int, default=None,
                        help=f"v2: multi-task LoRA steps (default {V2.multitask_steps}, with early stopping)")
    parser.add_argument("--library", default=str(default_library_dir()), help="prepared task library")
    parser.add_argument("--work", default=None, help="work directory (default runs/bench-quality-<scale>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for every stage (1 can be much faster on a busy machine)")
    parser.add_argument("--force", action="append", default=[], help="rerun this stage (repeatable)")
    parser.add_argument("--only", action="append", default=[], metavar="PREFIX",
                        help="run only the stages whose name starts with PREFIX (repeatable), e.g. two processes "
                             "`--only t2l-sft` and `--only lora: --only t2l-recon` side by side on a 2-core machine, "
                             "then one without --only for the rest; stage records are per stage, so this is safe")
    parser.add_argument("--methods", default=None,
                        help=f"methods the eval stage scores, comma-separated (default: {','.join(METHODS)}; v2: "
                             f"{','.join(V2_METHODS)}; v2 seen: {','.join(V2_SEEN_METHODS)})")
    parser.add_argument("--groups", default=None,
                        help="T2L-SFT description groups of the eval stage (default: the scale's)")
    parser.add_argument("--skip", action="append", default=[], metavar="PREFIX",
                        help="leave out the stages whose name starts with PREFIX (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run")
    parser.add_argument("--select-only", action="store_true", help=argparse.SUPPRESS)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
