"""T2L by reconstruction: learn to output an existing library of per-task LoRAs from their tasks' descriptions.

Loss: L1 between generated and library updates dW = B·A (default), or between the factors A and B themselves,
optionally z-scored per element across the library's tasks. No base model runs: this is fast on CPU.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from text2lora.checkpoint import CheckpointMeta, build_from_meta, save_checkpoint
from text2lora.data.library import TaskLibrary
from text2lora.encoders import build_encoder
from text2lora.errors import Text2LoraError
from text2lora.lora import load_peft_adapter
from text2lora.models.bundled import resolve_model
from text2lora.models.targets import discover_targets
from text2lora.train.config import ReconConfig
from text2lora.train.embeddings import EmbeddingTable


def read_lora_library(library_dir: Path, layout) -> dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """``{task: {module: (A (L, r, d_in), B (L, d_out, r))}}`` for every adapter directory in the library."""
    library_dir = Path(library_dir)
    if not library_dir.is_dir():
        raise Text2LoraError(f"LoRA library not found: {library_dir}")
    out = {}
    for sub in sorted(library_dir.iterdir()):
        if sub.name.startswith((".", "_")) or not (sub / "adapter_config.json").is_file():
            continue
        weights = load_peft_adapter(sub, layout)
        out[sub.name] = {k: (a[0], b[0]) for k, (a, b) in weights.factors.items()}
    if not out:
        raise Text2LoraError(f"no per-task PEFT adapters in {library_dir} (expected <library>/<task>/adapter_config.json)")
    return out


class ReconRecipe:
    primary_metric = "val_recon"

    def __init__(self, cfg: ReconConfig, lora_library: Path, *, library: TaskLibrary | None = None,
                 cache_dir: Path | None = None) -> None:
        self.cfg = cfg
        layout = discover_targets(resolve_model(cfg.base_model), tuple(cfg.targets))
        self.targets = read_lora_library(lora_library, layout)
        self.library = library or TaskLibrary.load(cfg.data.library)
        self.tasks = sorted(self.targets)
        self.task_info = {t: self.library.task(t) for t in self.tasks}
        ranks = {a.shape[1] for mods in self.targets.values() for a, _ in mods.values()}
        if ranks != {cfg.hypernet.lora.rank}:
            raise Text2LoraError(f"the LoRA library has rank {sorted(ranks)}; the hypernetwork emits rank {cfg.hypernet.lora.rank}")
        encoder = build_encoder(cfg.encoder)
        texts = [d for t in self.task_info.values() for d in t.training_descriptions + t.heldout_descriptions]
        self.embeddings = EmbeddingTable.build(encoder, texts, cache_dir)
        self.meta = CheckpointMeta(hypernet=cfg.hypernet, base_model=cfg.base_model, layout=layout, encoder=encoder.spec,
                                   trained=True, info={"recipe": "recon", "tasks": self.tasks, "loss": cfg.loss})
        self.hypernet = build_from_meta(self.meta, seed=cfg.loop.seed)
        self.stats = self._zscore_stats() if cfg.zscore else None

    def _zscore_stats(self):
        stats = {}
        for m in self.meta.layout.names:
            a = torch.stack([self.targets[t][m][0] for t in self.tasks])
            b = torch.stack([self.targets[t][m][1] for t in self.tasks])
            stats[m] = (a.mean(0), a.std(0).clamp(min=1e-6), b.mean(0), b.std(0).clamp(min=1e-6))
        return stats

    def trainable(self) -> torch.nn.Module:
        return self.hypernet

    def batch(self, step: int, rank: int, world: int) -> dict:
        rng = random.Random(f"{self.cfg.loop.seed}/{step * world + rank}")
        n = min(self.cfg.data.tasks_per_batch, len(self.tasks))
        tasks = rng.sample(self.tasks, n)
        descs = [rng.choice(self.task_info[t].training_descriptions) for t in tasks]
        return {"tasks": tasks, "emb": self.embeddings.lookup(descs)}

    def _library_factors(self, module: str, tasks: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The library's (A, B) of ``module`` for ``tasks``, stacked like the hypernetwork's output."""
        return (torch.stack([self.targets[t][module][0] for t in tasks]),
                torch.stack([self.targets[t][module][1] for t in tasks]))

    def _loss(self, factors, tasks: list[str]) -> torch.Tensor:
        total = 0.0
        for m, (a, b) in factors.items():  # a (N, L, r, d_in), b (N, L, d_out, r)
            ta, tb = self._library_factors(m, tasks)
            if self.cfg.loss == "dW":
                total = total + (b @ a - tb @ ta).abs().mean()
            else:
                if self.stats is not None:
                    ma, sa, mb, sb = self.stats[m]
                    a, ta, b, tb = (a - ma) / sa, (ta - ma) / sa, (b - mb) / sb, (tb - mb) / sb
                total = total + (a - ta).abs().mean() + (b - tb).abs().mean()
        return total

    def _dw_rel_error(self, factors, tasks: list[str]) -> float:
        """Mean over tasks, layers and modules of ||dW - dW_library||_F / ||dW_library||_F."""
        errors = []
        for m, (a, b) in factors.items():
            ta, tb = self._library_factors(m, tasks)
            target = tb @ ta
            norm = torch.linalg.matrix_norm(target).clamp(min=1e-12)
            errors.append(torch.linalg.matrix_norm(b @ a - target) / norm)
        return float(torch.stack(errors).mean())

    def loss(self, hypernet, batch: dict):
        loss = self._loss(hypernet(batch["emb"]), batch["tasks"])
        return loss, {"tokens": 0.0}

    def evaluate(self, hypernet, step: int | None = None) -> dict[str, float]:
        out = {}
        for name, pick in (("val_recon", "eval"), ("train_recon", "train")):
            tasks, descs = [], []
            for t in self.tasks:
                info = self.task_info[t]
                options = info.heldout_descriptions if pick == "eval" else info.training_descriptions
                if options:
                    tasks.append(t)
                    descs.append(options[0])
            if tasks:
                factors = hypernet(self.embeddings.lookup(descs))
                out[name] = float(self._loss(factors, tasks))
                if pick == "train":  # loss-independent: how far the generated updates are from the library's
                    out["train_dw_rel"] = self._dw_rel_error(factors, tasks)
        if "val_recon" not in out and "train_recon" in out:
            out["val_recon"] = out["train_recon"]
        return out

    def export(self, hypernet, out_dir: Path) -> None:
        save_checkpoint(hypernet, self.meta, out_dir)
