"""Training configs, one per recipe, sharing the data and loop sections. YAML in; the resolved config is saved
as JSON beside every checkpoint and compared on ``--resume``.

Unknown keys and wrong types are errors that name the key (``sft.loop.lr must be float, got str 'fast'``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text2lora.config import HyperNetConfig, apply_overrides, from_dict, read_yaml_mapping
from text2lora.encoders import EncoderSpec
from text2lora.errors import Text2LoraError
from text2lora.models.bundled import BUNDLED_BASE, BUNDLED_ENCODER
from text2lora.models.targets import DEFAULT_TARGETS

PRECISIONS = ("no", "bf16", "fp16")


@dataclass
class DataConfig:
    """Which tasks and how examples are cut to the budget."""

    library: str | None = None  #: task library directory (None: $TEXT2LORA_HOME/library)
    tasks: str = "seen"  #: "seen", "all", or a comma-separated list of task names
    max_tasks: int | None = None  #: keep only the first N tasks (sorted by name) of that selection
    tasks_per_batch: int = 8  #: T: tasks per batch (hierarchical sampling)
    examples_per_task: int = 1  #: E: examples per task in a batch
    max_prompt_tokens: int = 128  #: prompts are cut to this many tokens
    max_output_tokens: int = 32  #: completions are cut to this many tokens
    val_instances_per_task: int = 4  #: validation instances per task for the validation losses
    val_tasks: int | None = 16  #: tasks used for validation (None: all training tasks)
    shots_max: int = 4  #: hypernetworks with examples: up to this many training examples per sample
    shots_zero_prob: float = 0.25  #: ...and none at all this often (the description-only case)
    val_shots: int = 3  #: examples per instance in the ``val_shots`` validation loss
    #: of the samples that get examples, the share trained on the examples alone: their description is replaced by
    #: ``text2lora.examples.EXAMPLES_ONLY_DESCRIPTION``, so the examples must carry the task (0: never)
    shots_only_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("tasks_per_batch", "examples_per_task", "max_prompt_tokens", "max_output_tokens",
                     "val_instances_per_task"):
            if getattr(self, name) < 1:
                raise Text2LoraError(f"data.{name} must be >= 1")
        if not 0 <= self.shots_max <= 64 or not 0 <= self.val_shots <= 64:
            raise Text2LoraError("data.shots_max and data.val_shots must be in 0..64")
        for name in ("shots_zero_prob", "shots_only_prob"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise Text2LoraError(f"data.{name} must be in [0, 1], got {value}")
        for name in ("max_tasks", "val_tasks"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise Text2LoraError(f"data.{name} must be >= 1 or null, got {getattr(self, name)}")


@dataclass
class LoopConfig:
    """The optimisation loop shared by every recipe."""

    steps: int = 1000  #: optimiser steps
    lr: float = 2.5e-5  #: peak learning rate (AdamW)
    weight_decay: float = 1e-2
    warmup_ratio: float = 0.2  #: linear warm-up over this fraction of the steps, then linear decay to 0
    max_grad_norm: float = 1.0  #: gradient clipping
    eval_every: int = 100  #: validation every N steps (and at step 0 and at the end)
    save_every: int = 100  #: checkpoint every N steps (and at the end)
    keep_last: int = 2  #: checkpoints kept besides the best
    log_every: int = 10  #: metrics to metrics.jsonl every N steps
    seed: int = 0
    precision: str = "no"  #: "no" (fp32), "bf16" or "fp16" (GPUs)
    early_stop_patience: int | None = None  #: stop after N evaluations without a better validation loss
    log_with: str | None = None  #: also log to "tensorboard" or "wandb" if installed
    threads: int | None = None  #: torch CPU threads (None: torch's default); ``num_threads`` is read as this too
    #: SFT: compile the frozen base model's decoder layers in place (``torch.compile``, dynamic shapes; on CPU it
    #: needs a C++ compiler). The same computation, faster after a first slow step; a run may resume with it on or off.
    #: Measured 0.83x a step on one fixed batch (benchmarks/train_speed.py --compile); on the v2 long run's varying
    #: batches it bought nothing (8.3 s against eager's 8.0 s a step on the same batches, 1 thread): dynamo recompiles
    #: for every new batch size and for layer 0's input not requiring grad, and after its recompile limit (8) new
    #: shapes run eager (docs/quality/v2-recipe/README.md)
    compile: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise Text2LoraError("loop.steps must be >= 1")
        for name in ("lr", "max_grad_norm"):  # NaN and inf pass a plain `<= 0` check, then train a NaN model
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise Text2LoraError(f"loop.{name} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise Text2LoraError(f"loop.weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_ratio < 1:
            raise Text2LoraError("loop.warmup_ratio must be in [0, 1)")
        if self.precision not in PRECISIONS:
            raise Text2LoraError(f"loop.precision must be one of {', '.join(PRECISIONS)}")
        if self.log_with not in (None, "tensorboard", "wandb"):
            raise Text2LoraError("loop.log_with must be tensorboard, wandb or null")
        for name in ("eval_every", "save_every", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise Text2LoraError(f"loop.{name} must be >= 1")


@dataclass
class HypernetRecipeConfig:
    """What every recipe that trains a hypernetwork needs: the base model, its targets, the hypernetwork, the
    description encoder and the tasks."""

    base_model: str = BUNDLED_BASE
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    hypernet: HyperNetConfig = field(default_factory=HyperNetConfig)
    encoder: EncoderSpec = field(default_factory=lambda: EncoderSpec(name=BUNDLED_ENCODER))
    data: DataConfig = field(default_factory=DataConfig)


#: How SFT picks its best checkpoint: the lowest validation loss, or the highest generation score.
SELECT_BY = ("loss", "gen_score")


@dataclass
class GenValConfig:
    """Generation-based validation (SFT): each chosen task's adapter is generated from its own description and its
    test prompts are decoded greedily, scored as ``text2lora eval`` scores them (strict exact match or accuracy)
    with the copy rate; the base model without adapter is scored once as the reference."""

    benchmark: str | None = None  #: a benchmark JSON (e.g. benchmarks/v2/benchmark.json): the tasks of its ``split``
    split: str = "validation"  #: the benchmark side: "validation" (for decisions) or "test" (diagnosis only)
    tasks: str = "unseen"  #: without a benchmark: library tasks ("unseen", "seen", "all" or names)
    max_tasks: int | None = None  #: keep the first N of those tasks (by name)
    instances: int = 8  #: test instances per task (its first N, as ``text2lora eval`` takes them)
    max_new_tokens: int = 16  #: greedy decoding stops here or at end of turn
    max_prompt_tokens: int = 256  #: prompts are cut to this many tokens (``text2lora eval``'s default)
    batch_size: int = 16  #: prompts per forward pass
    every: int = 1  #: run on every N-th validation (of loop.eval_every), and always at step 0 and at the end
    #: hypernetworks that read examples are also scored with this many worked examples per task (``t2l+shots``:
    #: the shots ``text2lora eval`` gives ``icl3`` and ``t2l+shots``, from outside the scored instances); 0: never
    shots: int = 3
    #: "loss": best/ has the lowest val_instances; "gen_score": the highest gen_score (the primary metric is then
    #: gen_error = 1 - gen_score, which needs every: 1 and the validation split)
    select_by: str = "loss"

    def __post_init__(self) -> None:
        if self.split not in ("validation", "test"):
            raise Text2LoraError(f"gen_val.split must be validation or test, got {self.split!r}")
        if self.select_by not in SELECT_BY:
            raise Text2LoraError(f"gen_val.select_by must be one of {', '.join(SELECT_BY)}, got {self.select_by!r}")
        for name in ("instances", "max_new_tokens", "max_prompt_tokens", "batch_size", "every"):
            if getattr(self, name) < 1:
                raise Text2LoraError(f"gen_val.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.shots <= 64:
            raise Text2LoraError(f"gen_val.shots must be in 0..64, got {self.shots}")
        if self.max_tasks is not None and self.max_tasks < 1:
            raise Text2LoraError(f"gen_val.max_tasks must be >= 1 or null, got {self.max_tasks}")
        if self.select_by == "gen_score" and self.every != 1:
            raise Text2LoraError("gen_val.select_by gen_score compares every validation: it needs gen_val.every 1")
        if self.select_by == "gen_score" and self.benchmark is not None and self.split != "validation":
            raise Text2LoraError("gen_val.select_by gen_score would choose checkpoints on the benchmark's test side: "
                                 "use split validation")



@dataclass
class SFTConfig(HypernetRecipeConfig):
    """T2L trained end to end through the frozen base model."""

    loop: LoopConfig = field(default_factory=LoopConfig)
    label_smoothing: float = 0.1
    l2: float = 1e-3  #: coefficient of the mean squared value of the generated A and B
    init_checkpoint: str | None = None  #: start from this hypernetwork checkpoint instead of bias-HyperInit
    gen_val: GenValConfig | None = None  #: generation-based validation (None: validation losses only)
    #: start from this PEFT LoRA (e.g. ``<lora library>/_multitask``): every first adapter *is* it, and training
    #: learns the task-specific part on top (needs ``hypernet.offset: true``)
    init_lora: str | None = None
    #: down-weight tasks whose answers copy their inputs: a sample's loss is scaled by 1 - copy_downweight * (its
    #: task's share of training answers that are near-copies of the input); 0 keeps every task at weight 1
    copy_downweight: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.copy_downweight) and 0 <= self.copy_downweight <= 1):
            raise Text2LoraError(f"copy_downweight must be in [0, 1], got {self.copy_downweight}")


@dataclass
class LoraTrainConfig:
    """A PEFT LoRA baseline: per task (oracle) or one on all training tasks (multi-task)."""

    base_model: str = BUNDLED_BASE
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    use_rslora: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=200, lr=1e-3, warmup_ratio=0.1, eval_every=20,
                                                                 save_every=50, early_stop_patience=3))


@dataclass
class ReconConfig(HypernetRecipeConfig):
    """T2L trained to reproduce a library of per-task LoRAs."""

    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=2000, lr=1e-3, eval_every=200, save_every=500))
    loss: str = "dW"  #: "dW" (L1 on B·A) or "AB" (L1 on A and B)
    zscore: bool = False  #: with loss "AB": z-score each element across the library's tasks

    def __post_init__(self) -> None:
        if self.loss not in ("dW", "AB"):
            raise Text2LoraError("recon.loss must be 'dW' or 'AB'")


RECIPES = {"sft": SFTConfig, "lora": LoraTrainConfig, "recon": ReconConfig}
_NESTED = {"hypernet": HyperNetConfig, "encoder": EncoderSpec, "data": DataConfig, "loop": LoopConfig,
           "gen_val": GenValConfig}


def build_config(kind: str, data: dict[str, Any] | None) -> Any:
    """A recipe config from a (YAML-loaded) mapping; nested sections are validated with their own keys."""
    cls = RECIPES[kind]
    data = dict(data or {})
    loop = data.get("loop")
    if isinstance(loop, dict) and "num_threads" in loop:  # its name before `threads` was used everywhere
        loop = dict(loop)
        loop.setdefault("threads", loop.pop("num_threads"))
        data["loop"] = loop
    fields = {f.name for f in dataclasses.fields(cls)}
    for key, sub in _NESTED.items():
        if key in data and key in fields and data[key] is not None:
            if sub is EncoderSpec:
                if not isinstance(data[key], dict):
                    raise Text2LoraError(f"{kind}.{key} must be a mapping")
                unknown = sorted(set(data[key]) - {"kind", "name", "dim", "tasks"})
                if unknown:
                    raise Text2LoraError(f"{kind}.{key}: unknown key {unknown[0]!r}")
                data[key] = EncoderSpec(**data[key])
            else:
                data[key] = from_dict(sub, data[key], f"{kind}.{key}")
    if "targets" in data and (not isinstance(data["targets"], list) or not all(isinstance(t, str) for t in data["targets"])):
        raise Text2LoraError(f"{kind}.targets must be a list of module names")
    return from_dict(cls, data, kind)


def load_config(kind: str, path: str | Path | None, overrides: dict[str, Any] | None = None) -> Any:
    """Read a YAML config for recipe ``kind`` (``sft``, ``lora``, ``recon``); ``overrides`` use dotted keys."""
    if kind not in RECIPES:
        raise Text2LoraError(f"unknown recipe {kind!r}; choose one of {', '.join(RECIPES)}")
    data: dict[str, Any] = {}
    if path is not None:
        loaded = read_yaml_mapping(path)
        if set(loaded) == {kind}:  # allow a top-level "sft:" / "lora:" / "recon:" section
            loaded = loaded[kind] or {}
        recipe = loaded.pop("recipe", kind)
        if recipe != kind:
            raise Text2LoraError(f"config {path} is for `train {recipe}`, not `train {kind}`")
        data = loaded
    return build_config(kind, apply_overrides(data, overrides or {}))


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
