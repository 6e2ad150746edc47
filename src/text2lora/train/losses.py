"""Completion-only causal-LM loss that computes the LM head only where it is needed.

Batches are left-padded, so every completion ends at the last position: the logits of the last K positions
(K = longest completion + 1) cover every label, and the vocabulary projection runs on B*K positions instead of
B*T (``logits_to_keep``). For a 135M model with a 49k vocabulary that head is a large share of the step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def positions_to_keep(labels: torch.Tensor) -> int:
    """Smallest K such that the last K positions predict every label (labels: (B, T), left-padded)."""
    valid = labels != IGNORE_INDEX  # (B, T)
    if not valid.any():
        raise ValueError("batch has no completion tokens")
    t = labels.shape[1]
    first = torch.where(valid.any(1), valid.float().argmax(1), torch.full_like(valid[:, 0], t, dtype=torch.long))
    return int(t - first.min().item()) + 1


def per_sample_completion_loss(
    model, batch: dict, *, label_smoothing: float = 0.0, full_logits: bool = False
) -> torch.Tensor:
    """Mean token cross-entropy of each sample's completion: (B,)."""
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: count real tokens only
    keep = ids.shape[1] if full_logits else min(ids.shape[1], positions_to_keep(labels))
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, logits_to_keep=keep, use_cache=False)
    logits = out.logits[:, :-1]  # (B, K-1, V): position t predicts token t+1
    target = labels[:, -(keep - 1):] if keep > 1 else labels[:, :0]  # (B, K-1)
    ce = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
        ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing, reduction="none",
    ).view(target.shape)
    valid = (target != IGNORE_INDEX).float()
    return (ce * valid).sum(1) / valid.sum(1).clamp(min=1.0)


def completion_loss(model, batch: dict, *, label_smoothing: float = 0.0, full_logits: bool = False) -> torch.Tensor:
    return per_sample_completion_loss(model, batch, label_smoothing=label_smoothing, full_logits=full_logits).mean()
