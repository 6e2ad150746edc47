"""T2L by SFT: generate a LoRA per example from a description of its task, train through the frozen base model."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from text2lora.checkpoint import CheckpointMeta, build_from_meta, load_checkpoint, load_weights_into, save_checkpoint
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


class ExampleEmbeddings:
    """Encoded example texts, each computed once per run (the encoder is frozen), held in memory.

    Training draws thousands of example texts, and inputs longer than the encoder reads are common: rather than a
    warning per text (which buried the training log), the first one cut is reported once, with what happens to the
    rest; ``cut`` counts them all."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.cache: dict[str, torch.Tensor] = {}
        self.cut = 0  #: distinct example texts longer than the encoder reads (0 where the encoder cannot tell)

    def encode(self, texts: list[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            too_long = getattr(self.encoder, "too_long", None)
            if too_long is not None:
                cut = too_long(missing)
                if cut and not self.cut:
                    _, n = cut[0]
                    log.warning("an example text of %d tokens is longer than the encoder reads (%d): it reads the "
                                "first %d of this and of every longer example text; not reported one by one",
                                n, self.encoder.max_tokens, self.encoder.max_tokens)
                self.cut += len(cut)
            for t, row in zip(missing, self.encoder.encode(missing, label="example text", warn=False)):
                self.cache[t] = row
        return torch.stack([self.cache[t] for t in texts])

    def features(self, rows, max_examples: int) -> tuple[torch.Tensor, torch.Tensor]:
        from text2lora.examples import encode_examples

        return encode_examples(self.encode, rows, self.encoder.spec.dim, max_examples)


def lora_factors(path: str, layout, lora_config) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A PEFT LoRA as the factors a hypernetwork with ``lora_config`` must emit to reproduce it: A (L, r, d_in),
    B (L, d_out, r), with B rescaled when the two scale the update differently."""
    from text2lora.errors import Text2LoraError
    from text2lora.lora import load_peft_adapter

    weights = load_peft_adapter(path, layout)
    if weights.rank != lora_config.rank:
        raise Text2LoraError(f"init_lora {path} has rank {weights.rank}; the hypernetwork makes rank {lora_config.rank}")
    ratio = weights.config.scale / lora_config.scale
    return {name: (a[0].clone(), b[0] * ratio) for name, (a, b) in weights.factors.items()}


def copy_weights(data: TrainData, strength: float) -> dict[str, float]:
    """Per-task loss weights 1 - strength * (share of the task's training answers that are near-copies of its
    inputs, :func:`text2lora.eval.metrics.near_copy`; the first 200 instances are checked); empty when
    ``strength`` is 0."""
    if not strength:
        return {}
    from text2lora.eval.metrics import near_copy

    weights = {}
    for name, instances in data.train.items():
        checked = instances[:200]
        share = sum(near_copy(i.output, i.input) for i in checked) / max(len(checked), 1)
        weights[name] = 1.0 - strength * share
    heavy = sorted(weights, key=weights.get)[:5]
    log.info("copy_downweight %.2f: lightest tasks %s", strength, ", ".join(f"{t} {weights[t]:.2f}" for t in heavy))
    return weights


def model_dtype(precision: str) -> torch.dtype:
    if torch.cuda.is_available() and precision == "bf16":
        return torch.bfloat16
    return torch.float32


class SFTRecipe:
    primary_metric = "val_instances"  #: or gen_error with gen_val.select_by gen_score (see train/gen_val.py)

    def __init__(self, cfg: SFTConfig, *, library: TaskLibrary | None = None, base_model=None, tokenizer=None,
                 cache_dir: Path | None = None, run_dir: Path | None = None) -> None:
        self.cfg = cfg
        if cfg.data.shots_only_prob and not cfg.hypernet.examples:
            from text2lora.errors import Text2LoraError

            raise Text2LoraError("data.shots_only_prob trains samples on their examples alone: it needs "
                                 "hypernet.examples (set it, or set data.shots_only_prob to 0)")
        device = default_device()
        if base_model is None:
            base_model, tokenizer = load_base_model(cfg.base_model, dtype=model_dtype(cfg.loop.precision),
                                                    device=device)
        self.base_model, self.tokenizer = base_model, tokenizer
        if cfg.loop.compile:
            from text2lora.models.base import compile_decoder_layers

            compile_decoder_layers(base_model)
        self.library = library or TaskLibrary.load(cfg.data.library)
        shots_max = min(cfg.data.shots_max, cfg.hypernet.examples.max_examples) if cfg.hypernet.examples else 0
        self.data = TrainData(self.library, tokenizer, cfg.data, seed=cfg.loop.seed, shots_max=shots_max)
        layout = discover_targets(base_model.config, tuple(cfg.targets))
        encoder = build_encoder(cfg.encoder)
        self.embeddings = EmbeddingTable.build(encoder, self.data.all_descriptions(), cache_dir)
        self.example_encoder = ExampleEmbeddings(encoder) if cfg.hypernet.examples else None
        self.meta = CheckpointMeta(hypernet=cfg.hypernet, base_model=cfg.base_model, layout=layout,
                                   encoder=encoder.spec, trained=True,
                                   info={"recipe": "sft", "tasks": [t.name for t in self.data.tasks]})
        if cfg.init_checkpoint:
            init, meta = load_checkpoint(cfg.init_checkpoint)
            meta.layout.require_fits(layout, what=f"init_checkpoint {cfg.init_checkpoint}", made_for=meta.base_model,
                                     model=f"the base model {cfg.base_model}")
            # the run's architecture, the checkpoint's weights; a description-only checkpoint under a config with
            # examples leaves the conditioner at its zero init (the same adapters until training moves it)
            self.hypernet = build_from_meta(self.meta, seed=cfg.loop.seed)
            load_weights_into(self.hypernet, init.state_dict(), f"init_checkpoint {cfg.init_checkpoint}",
                              may_lack=("examples.",))
        else:
            self.hypernet = build_from_meta(self.meta, seed=cfg.loop.seed)
        if cfg.init_lora:
            self.hypernet.start_from(lora_factors(cfg.init_lora, layout, cfg.hypernet.lora))
            self.meta.info["init_lora"] = str(cfg.init_lora)
        self.task_weight = copy_weights(self.data, cfg.copy_downweight)
        self.hypernet.to(device)
        self.val_sets = self.data.val_sets()
        self.gen_val = None
        if cfg.gen_val is not None:  # run_dir: where gen_val.jsonl (per task and family) goes
            from text2lora.train.gen_val import GenValidator

            self.gen_val = GenValidator(cfg.gen_val, self.library, tokenizer, encoder, base_model=cfg.base_model,
                                        eval_every=cfg.loop.eval_every, steps=cfg.loop.steps, run_dir=run_dir,
                                        trained={t.name for t in self.data.tasks})
            self.primary_metric = self.gen_val.primary_metric or self.primary_metric

    def trainable(self) -> torch.nn.Module:
        return self.hypernet

    def batch(self, step: int, rank: int, world: int) -> dict:
        batch = self.data.batch(step, rank, world)
        batch["emb"] = self.embeddings.lookup(batch["description"])
        self._attach_examples(batch)
        return batch

    def _attach_examples(self, batch: dict) -> None:
        if self.example_encoder is None:
            return
        rows = self.data.shot_examples(batch)
        if any(rows):
            batch["ex_feats"], batch["ex_mask"] = self.example_encoder.features(rows, self.hypernet.max_examples)

    def _lora(self, hypernet, emb: torch.Tensor, batch: dict | None = None) -> LoraWeights:
        examples = (batch["ex_feats"], batch["ex_mask"]) if batch is not None and "ex_feats" in batch else None
        return self.meta.lora(hypernet(emb, examples))

    def _to_device(self, batch: dict) -> dict:
        device = self.base_model.device
        return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}

    def loss(self, hypernet, batch: dict):
        batch = self._to_device(batch)
        lora = self._lora(hypernet, batch["emb"], batch)
        per_sample = grouped_completion_loss(self.base_model, batch, lora=lora,
                                             lora_dropout=self.cfg.hypernet.lora.dropout,
                                             label_smoothing=self.cfg.label_smoothing)
        if self.task_weight:  # each sample is already its task's mean token loss; this scales whole tasks
            weight = torch.tensor([self.task_weight[t] for t in batch["task"]], device=per_sample.device)
            ce = (per_sample * weight).sum() / weight.sum().clamp(min=1e-6)
        else:
            ce = per_sample.mean()
        l2 = sum(a.float().pow(2).mean() + b.float().pow(2).mean() for a, b in lora.factors.values())
        return ce + self.cfg.l2 * l2, {"ce": ce.item(), "l2": float(l2.detach()), "tokens": float(batch["attention_mask"].sum())}

    def evaluate(self, hypernet, step: int | None = None) -> dict[str, float]:
        out = {}
        for val in self.val_sets:
            losses = []
            for batch in self.data.val_batches(val.refs):
                self._attach_examples(batch)
                batch = self._to_device(batch)
                lora = self._lora(hypernet, self.embeddings.lookup(batch["description"]).to(self.base_model.device),
                                  batch)
                losses.append(grouped_completion_loss(self.base_model, batch, lora=lora))
            out[val.name] = torch.cat(losses).mean().item()
        if self.gen_val is not None and self.gen_val.due(step):
            extra = {}
            if self.example_encoder is not None:
                def with_examples(emb: torch.Tensor, rows: list[list]) -> LoraWeights:
                    feats, mask = self.example_encoder.features(rows, self.hypernet.max_examples)
                    return self.meta.lora(hypernet(emb, (feats.to(emb.device), mask.to(emb.device))))

                extra["make_lora_with_examples"] = with_examples
            out.update(self.gen_val.evaluate(self.base_model, hypernet, lambda emb: self._lora(hypernet, emb), step,
                                             **extra))
        return out

    def export(self, hypernet, out_dir: Path) -> None:
        save_checkpoint(hypernet, self.meta, out_dir)
