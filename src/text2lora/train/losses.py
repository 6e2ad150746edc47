"""Completion-only causal-LM loss that computes the LM head only where it is needed.

Batches are left-padded, so every completion ends at the last position: the logits of the last K positions
(K = longest completion + 1) cover every label, and the vocabulary projection runs on B*K positions instead of
B*T (``logits_to_keep``). For a 135M model with a 49k vocabulary that head is a large share of the step.

On CPU a batch is also split by length (:func:`grouped_completion_loss`): one long multiple-choice prompt would
otherwise pad every short row of the batch to its width, and the padding costs as much as real tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from text2lora.data.prompts import IGNORE_INDEX


def positions_to_keep(labels: torch.Tensor) -> int:
    """Smallest K such that the last K positions predict every label (labels: (B, T), left-padded)."""
    valid = labels != IGNORE_INDEX  # (B, T)
    if not valid.any():
        raise ValueError("batch has no completion tokens")
    t = labels.shape[1]
    first = torch.where(valid.any(1), valid.float().argmax(1), torch.full_like(valid[:, 0], t, dtype=torch.long))
    return int(t - first.min().item()) + 1


def per_sample_completion_loss(
    model, batch: dict, *, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean token cross-entropy of each sample's completion: (B,)."""
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: count real tokens only
    keep = min(ids.shape[1], positions_to_keep(labels))
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, logits_to_keep=keep, use_cache=False)
    logits = out.logits[:, :-1]  # (B, K-1, V): position t predicts token t+1
    target = labels[:, -(keep - 1):] if keep > 1 else labels[:, :0]  # (B, K-1)
    ce = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
        ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing, reduction="none",
    ).view(target.shape)
    valid = (target != IGNORE_INDEX).float()
    return (ce * valid).sum(1) / valid.sum(1).clamp(min=1.0)




#: The cost of one more pass, in padded positions: a training step of the bundled model on 2 CPU cores costs
#: ~4.5 ms per position (measured, ``benchmarks/train_speed.py``); ~0.2 s of fixed work per pass (Python and
#: launches over 30 layers) is our estimate, not a measurement.
GROUP_OVERHEAD_POSITIONS = 48


def length_groups(lengths: Sequence[int], *, overhead: float = GROUP_OVERHEAD_POSITIONS) -> list[list[int]]:
    """Split rows into groups that each pad to their own longest row, at the least total cost.

    The cost of a group is ``rows * longest + overhead``; with rows sorted by length the best split is contiguous,
    so a dynamic programme over the sorted rows finds it exactly. Returns row indices, longest group first.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j sorted rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):  # the last group is sorted rows i..j-1, padded to the longest, row i
            cost = best[i] + (j - i) * lengths[order[i]] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def take_rows(batch: dict, rows: Sequence[int]) -> dict:
    """Rows of a left-padded batch, without the columns that are padding in every one of them."""
    index = torch.tensor(list(rows), device=batch["input_ids"].device)
    mask = batch["attention_mask"].index_select(0, index)
    width = int(mask.sum(1).max())
    return {k: v.index_select(0, index)[:, -width:] for k, v in batch.items()
            if k in ("input_ids", "attention_mask", "labels")}


def grouped_completion_loss(
    model, batch: dict, *, lora=None, lora_dropout: float = 0.0, label_smoothing: float = 0.0,
    overhead: float | None = None,
) -> torch.Tensor:
    """:func:`per_sample_completion_loss` (B,) computed group by group, each group at its own width.

    ``lora`` (a :class:`text2lora.lora.LoraWeights` with one adapter per row, or one for all) is applied to its
    rows of each group. On CUDA (``overhead`` None) the batch stays whole: padding is cheap there, launches are not.
    """
    from text2lora.lora import apply_lora

    ids = batch["input_ids"]
    if overhead is None:
        overhead = float("inf") if ids.device.type == "cuda" else GROUP_OVERHEAD_POSITIONS
    lengths = batch["attention_mask"].sum(1).tolist()
    groups = [list(range(len(lengths)))] if overhead == float("inf") else length_groups(lengths, overhead=overhead)
    parts = []
    for rows in groups:
        sub = batch if len(groups) == 1 else take_rows(batch, rows)
        ctx = contextlib.nullcontext()
        if lora is not None:
            chosen = lora if lora.n == 1 else lora.select(torch.tensor(rows, device=ids.device))
            ctx = apply_lora(model, chosen, dropout=lora_dropout)
        with ctx:
            parts.append(per_sample_completion_loss(model, sub, label_smoothing=label_smoothing))
    if len(parts) == 1:
        return parts[0]
    order = torch.tensor([r for rows in groups for r in rows], device=ids.device)
    return torch.cat(parts).index_select(0, torch.argsort(order))  # back to the batch's row order
