"""Fit tasks to the CPU budget, measured in tokens of the base model's tokenizer.

``fit_task(data, tokenizer, budget, seed) -> FitResult`` shuffles a task's instances (deterministically from the
seed and the task name), removes duplicates, and walks them until ``budget.max_instances`` are kept:

* a generation output over ``max_output_tokens``, a multiple-choice option over ``max_option_tokens`` or more than
  ``max_options`` options: the instance is dropped (answers are never cut);
* a user turn (input + options, see :func:`text2lora.data.prompts.user_message`) over ``max_prompt_tokens``: the
  input is cut in the middle when the overflow is at most ``truncate_factor`` times the budget, else dropped.

A task left with fewer than ``min_instances`` is dropped, with the reason in ``FitResult.reason``.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from text2lora.data.prompts import fit_user_message, user_message
from text2lora.data.task import Instance, TaskData
from text2lora.errors import Text2LoraError


MAX_CHARS_PER_TOKEN = 16


@dataclass
class Budget:
    """Token limits of the task library (the defaults suit CPU training of a ~135M model)."""

    max_prompt_tokens: int = 256
    """User-turn tokens (input + options), before the chat template's own tokens."""
    max_output_tokens: int = 48
    """Generation targets longer than this are dropped, not cut."""
    max_option_tokens: int = 32
    """Multiple-choice options longer than this drop the instance."""
    max_options: int = 10
    min_instances: int = 30
    """Tasks with fewer usable instances are dropped."""
    max_instances: int = 400
    """Instances kept per task (a deterministic random sample)."""
    max_tasks_per_source: int = 12
    """Tasks kept per source family (so BIG-bench's 260 list_functions subtasks do not swamp the library)."""
    truncate_factor: float = 2.0
    """Inputs up to this many times the prompt budget are cut in the middle; longer ones are dropped."""

    def __post_init__(self) -> None:
        for name in ("max_prompt_tokens", "max_output_tokens", "max_option_tokens", "max_options",
                     "min_instances", "max_instances", "max_tasks_per_source"):
            if getattr(self, name) < 1:
                raise Text2LoraError(f"budget.{name} must be >= 1, got {getattr(self, name)}")
        if self.min_instances > self.max_instances:
            raise Text2LoraError("budget.min_instances must not exceed budget.max_instances")
        if not self.truncate_factor >= 1:  # also refuses NaN
            raise Text2LoraError("budget.truncate_factor must be >= 1")


@dataclass
class FitResult:
    data: TaskData | None
    """The fitted task, or None when it was dropped."""
    reason: str | None = None
    stats: dict[str, int] = field(default_factory=dict)
    """kept, truncated, duplicate, long_input, long_output, long_options."""


def rng_for(seed: int, *keys: str) -> random.Random:
    """A random generator determined by the seed and the keys (stable across runs and Python versions)."""
    digest = hashlib.sha256(":".join([str(seed), *keys]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _lengths(tokenizer, texts: list[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def fit_task(data: TaskData, tokenizer, budget: Budget, *, seed: int = 0, chunk: int = 256) -> FitResult:
    """Cut, drop and cap one task's instances to the budget."""
    stats = dict.fromkeys(("kept", "truncated", "duplicate", "long_input", "long_output", "long_options"), 0)
    order = list(range(len(data.instances)))
    rng_for(seed, "fit", data.task.name).shuffle(order)
    seen: set[tuple] = set()
    kept: list[Instance] = []
    # No tokenizer puts more than this many characters in one token: a cheap first filter for huge inputs.
    max_chars = int(budget.truncate_factor * budget.max_prompt_tokens * MAX_CHARS_PER_TOKEN)
    for start in range(0, len(order), chunk):
        batch = []
        for i in order[start:start + chunk]:
            inst = data.instances[i]
            key = (inst.input, inst.output, tuple(inst.options or ()))
            if key in seen:
                stats["duplicate"] += 1
                continue
            seen.add(key)
            if len(inst.input) > max_chars:
                stats["long_input"] += 1
                continue
            batch.append(inst)
        kept.extend(_fit_batch(batch, tokenizer, budget, stats))
        scanned = start + chunk
        if len(kept) >= budget.max_instances:
            break
        if scanned >= 4 * chunk and len(kept) * len(order) < budget.min_instances * scanned:
            break  # at this rate the task cannot reach min_instances: stop tokenising it
    kept = kept[: budget.max_instances]
    stats["kept"] = len(kept)
    if len(kept) < budget.min_instances:
        why = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in stats.items() if v and k not in ("kept", "truncated"))
        reason = f"only {len(kept)} usable instances (< {budget.min_instances})" + (f"; dropped {why}" if why else "")
        return FitResult(None, reason, stats)
    return FitResult(TaskData(data.task, kept), None, stats)


def _fit_batch(batch: list[Instance], tokenizer, budget: Budget, stats: dict[str, int]) -> list[Instance]:
    out_lens = _lengths(tokenizer, [i.output for i in batch])
    prompt_lens = _lengths(tokenizer, [user_message(i) for i in batch])
    kept = []
    for inst, out_len, prompt_len in zip(batch, out_lens, prompt_lens):
        if inst.options:
            if len(inst.options) > budget.max_options or max(_lengths(tokenizer, inst.options)) > budget.max_option_tokens:
                stats["long_options"] += 1
                continue
        elif out_len > budget.max_output_tokens:
            stats["long_output"] += 1
            continue
        if prompt_len > budget.max_prompt_tokens:
            if prompt_len > budget.truncate_factor * budget.max_prompt_tokens:
                stats["long_input"] += 1
                continue
            cut = fit_user_message(tokenizer, inst, budget.max_prompt_tokens)
            if cut is None or len(cut.input) < 16:  # nothing left of the input but its two ends
                stats["long_input"] += 1
                continue
            inst = cut
            stats["truncated"] += 1
        kept.append(inst)
    return kept
