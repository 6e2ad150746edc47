"""T2L by SFT: generate a LoRA per example from a description of its task, train through the frozen base model."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from text2lora.checkpoint import CheckpointMeta, build_from_meta, load_checkpoint, save_checkpoint
from text2lora.data.library import TaskLibrary
from text2lora.encoders import build_encoder
from text2lora.lora import LoraWeights
from text2lora.models.base import default_device, load_base_model
from text2lora.models.targets import discover_targets
from text2lora.train.config import SFTConfig
from text2lora.train.data import TrainData
from text2lora.train.embeddings import EmbeddingTable
from text2lora.train.losses import grouped_completion_loss

log = logging.getLogger(__name__)


def model_dtype(precision: str) -> torch.dtype:
    if torch.cuda.is_available() and precision == "bf16":
        return torch.bfloat16
    return torch.float32


class SFTRecipe:
    primary_metric = "val_instances"

    def __init__(self, cfg: SFTConfig, *, library: TaskLibrary | None = None, base_model=None, tokenizer=None,
                 cache_dir: Path | None = None) -> None:
        self.cfg = cfg
        device = default_device()
        if base_model is None:
            base_model, tokenizer = load_base_model(cfg.base_model, dtype=model_dtype(cfg.loop.precision),
                                                    device=device)
        self.base_model, self.tokenizer = base_model, tokenizer
        self.library = library or TaskLibrary.load(cfg.data.library)
        self.data = TrainData(self.library, tokenizer, cfg.data, seed=cfg.loop.seed)
        layout = discover_targets(base_model.config, tuple(cfg.targets))
        encoder = build_encoder(cfg.encoder)
        self.embeddings = EmbeddingTable.build(encoder, self.data.all_descriptions(), cache_dir)
        self.meta = CheckpointMeta(hypernet=cfg.hypernet, base_model=cfg.base_model, layout=layout,
                                   encoder=encoder.spec, trained=True,
                                   info={"recipe": "sft", "tasks": [t.name for t in self.data.tasks]})
        if cfg.init_checkpoint:
            self.hypernet, meta = load_checkpoint(cfg.init_checkpoint)
            meta.layout.require_fits(layout, what=f"init_checkpoint {cfg.init_checkpoint}", made_for=meta.base_model,
                                     model=f"the base model {cfg.base_model}")
        else:
            self.hypernet = build_from_meta(self.meta, seed=cfg.loop.seed)
        self.hypernet.to(device)
        self.val_sets = self.data.val_sets()

    def trainable(self) -> torch.nn.Module:
        return self.hypernet

    def batch(self, step: int, rank: int, world: int) -> dict:
        batch = self.data.batch(step, rank, world)
        batch["emb"] = self.embeddings.lookup(batch["description"])
        return batch

    def _lora(self, hypernet, emb: torch.Tensor) -> LoraWeights:
        return self.meta.lora(hypernet(emb))

    def _to_device(self, batch: dict) -> dict:
        device = self.base_model.device
        return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}

    def loss(self, hypernet, batch: dict):
        batch = self._to_device(batch)
        lora = self._lora(hypernet, batch["emb"])
        ce = grouped_completion_loss(self.base_model, batch, lora=lora, lora_dropout=self.cfg.hypernet.lora.dropout,
                                     label_smoothing=self.cfg.label_smoothing).mean()
        l2 = sum(a.float().pow(2).mean() + b.float().pow(2).mean() for a, b in lora.factors.values())
        return ce + self.cfg.l2 * l2, {"ce": ce.item(), "l2": float(l2.detach()), "tokens": float(batch["attention_mask"].sum())}

    def evaluate(self, hypernet) -> dict[str, float]:
        out = {}
        for val in self.val_sets:
            losses = []
            for batch in self.data.val_batches(val.refs):
                batch = self._to_device(batch)
                lora = self._lora(hypernet, self.embeddings.lookup(batch["description"]).to(self.base_model.device))
                losses.append(grouped_completion_loss(self.base_model, batch, lora=lora))
            out[val.name] = torch.cat(losses).mean().item()
        return out

    def export(self, hypernet, out_dir: Path) -> None:
        save_checkpoint(hypernet, self.meta, out_dir)
