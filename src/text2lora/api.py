"""The Python API: load a hypernetwork checkpoint, turn descriptions into adapters.

    from text2lora import T2L
    t2l = T2L.load()                                  # the default checkpoint
    lora = t2l.generate(["Answer grade-school maths word problems."])
    lora = t2l.generate("Capitalise the word.", examples=[{"input": "dog", "output": "DOG"}])  # checkpoints
                                                      # trained with examples (CheckpointMeta.hypernet.examples)
    t2l.save_adapter("Answer grade-school maths word problems.", "adapters/gsm")   # a PEFT directory
    with apply_lora(model, lora): model.generate(...)  # or in memory, one adapter per sample
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch

from text2lora.checkpoint import CheckpointMeta, build_from_meta, load_checkpoint, read_meta, save_checkpoint
from text2lora.config import HyperNetConfig, LoraConfig
from text2lora.encoders import Encoder, EncoderSpec, build_encoder, check_descriptions
from text2lora.errors import Text2LoraError
from text2lora.examples import Example, encode_examples, example_rows
from text2lora.hypernet import HyperNetwork
from text2lora.lora import LoraWeights, adapter_provenance, save_peft_adapter
from text2lora.models.bundled import BUNDLED_BASE, BUNDLED_ENCODER, hub_name, resolve_model
from text2lora.models.targets import DEFAULT_TARGETS, TargetLayout, discover_targets
from text2lora.paths import home

log = logging.getLogger(__name__)

#: A trained checkpoint shipped inside the package (absent until one is trained and committed).
SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "default"
GENERATE_BATCH = 64
"""Descriptions per hypernetwork pass when writing many adapters."""


class T2L:
    """A hypernetwork, its encoder and its metadata: descriptions in, :class:`LoraWeights` out."""

    def __init__(self, hypernet: HyperNetwork, meta: CheckpointMeta, encoder: Encoder | None = None) -> None:
        self.hypernet = hypernet
        self.meta = meta
        self._encoder = encoder

    @classmethod
    def load(cls, checkpoint: str | os.PathLike | None = None, device: str = "cpu") -> T2L:
        """Load a checkpoint directory (default: :func:`default_checkpoint`). The encoder loads on first use."""
        path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
        net, meta = load_checkpoint(path, device)
        return cls(net, meta)

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            encoder = build_encoder(self.meta.encoder, str(self.device))
            if encoder.spec.dim != self.hypernet.encoder_dim:
                raise Text2LoraError(
                    f"encoder {encoder.spec.name!r} gives {encoder.spec.dim}-d embeddings; the hypernetwork takes "
                    f"{self.hypernet.encoder_dim}"
                )
            self._encoder = encoder
        return self._encoder

    @property
    def layout(self) -> TargetLayout:
        return self.meta.layout

    @property
    def device(self) -> torch.device:
        return next(self.hypernet.parameters()).device

    def embed(self, descriptions: str | list[str]) -> torch.Tensor:
        texts = [descriptions] if isinstance(descriptions, str) else list(descriptions)
        return self.encoder.encode(check_descriptions(texts)).to(self.device)

    @property
    def max_examples(self) -> int:
        """How many worked examples one adapter can be generated from (0: this checkpoint reads descriptions only)."""
        return self.hypernet.max_examples

    def require_examples(self, n: int) -> None:
        """Refuse ``n`` examples for one adapter when this checkpoint cannot read them (the one check the CLI, the
        server and the evaluation make before any work)."""
        if n and self.max_examples == 0:
            raise Text2LoraError("this checkpoint was trained on descriptions only and cannot read examples; use a "
                                 "checkpoint trained with hypernet.examples, or leave the examples out")
        if n > self.max_examples:
            raise Text2LoraError(f"{n} examples; this checkpoint reads at most {self.max_examples}")

    def embed_examples(self, rows: list[list[Example]]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Checked example rows -> the hypernetwork's ``(features, mask)``, or None when no row has examples."""
        if not any(rows):
            return None
        self.require_examples(max(len(r) for r in rows))
        encode = functools.partial(self.encoder.encode, label="example text")  # warnings name the text, not a position
        feats, mask = encode_examples(encode, rows, self.hypernet.encoder_dim, self.max_examples)
        return feats.to(self.device), mask.to(self.device)

    def lora_from_embeddings(self, emb: torch.Tensor,
                             examples: tuple[torch.Tensor, torch.Tensor] | None = None) -> LoraWeights:
        """Run the hypernetwork (with autograd if enabled: training calls this)."""
        return self.meta.lora(self.hypernet(emb, examples))

    @torch.inference_mode()
    def generate(self, descriptions: str | list[str], examples=None) -> LoraWeights:
        """One adapter per description, in memory, in one forward pass.

        ``examples`` (checkpoints trained with examples): a list of ``{"input", "output"}`` objects shared by every
        description, or one such list per description; they shape the adapter and are never put in a prompt."""
        texts = [descriptions] if isinstance(descriptions, str) else list(descriptions)
        rows = example_rows(examples, len(texts))
        self.hypernet.eval()
        emb = self.embed(texts)
        return self.lora_from_embeddings(emb, self.embed_examples(rows))

    def check_base_model(self, base_model: str) -> None:
        """Refuse a base model whose targets differ from the ones this checkpoint was made for."""
        if base_model == self.meta.base_model:
            return
        other = discover_targets(resolve_model(base_model), self.layout.names)
        self.layout.require_fits(other, what="this checkpoint", made_for=self.meta.base_model,
                                 model=f"the base model {base_model}")

    def peft_base_name(self) -> str:
        """``base_model_name_or_path`` for exported adapters: the base's hub id (:func:`~text2lora.models.bundled.hub_name`),
        which means the same model on every machine, not a path of this one."""
        return hub_name(self.meta.base_model)

    def save_adapter(self, description: str, out_dir: str | os.PathLike, examples=None) -> Path:
        """Generate one adapter and write it as a PEFT directory."""
        return self.save_adapters([description], [out_dir], examples=examples)[0]

    def save_adapters(self, descriptions: list[str], out_dirs: list[str | os.PathLike], *,
                      batch_size: int | None = None, examples=None) -> list[Path]:
        """Generate and write one PEFT adapter per description, ``batch_size`` hypernetwork passes at a time (so a
        long list needs the memory of one batch, not of all its adapters at once). ``examples`` as in
        :meth:`generate`."""
        if len(descriptions) != len(out_dirs):
            raise Text2LoraError("one output directory per description is needed")
        rows = example_rows(examples, len(descriptions))
        base = self.peft_base_name()
        batch_size = batch_size or GENERATE_BATCH
        paths = []
        for start in range(0, len(descriptions), batch_size):
            chunk = descriptions[start:start + batch_size]
            chunk_rows = rows[start:start + batch_size]
            weights = self.generate(chunk, examples=chunk_rows)
            for i, (d, row, out) in enumerate(zip(chunk, chunk_rows, out_dirs[start:start + batch_size])):
                metadata = adapter_provenance(d, self.meta.base_model, row)
                paths.append(save_peft_adapter(weights, out, base_model_name_or_path=base, index=i,
                                               metadata=metadata))
        return paths


def init_checkpoint(
    out_dir: str | os.PathLike,
    *,
    base_model: str = BUNDLED_BASE,
    variant: str = "L",
    targets: tuple[str, ...] = DEFAULT_TARGETS,
    encoder: EncoderSpec | None = None,
    hypernet: HyperNetConfig | None = None,
    seed: int = 0,
) -> Path:
    """Write a freshly initialised (bias-HyperInit) hypernetwork for ``base_model``: its adapters have dW = 0."""
    config = hypernet or HyperNetConfig(variant=variant, lora=LoraConfig())
    if hypernet is not None and variant != hypernet.variant:
        config = HyperNetConfig(**{**hypernet.to_dict(), "variant": variant, "n_blocks": None})
    layout = discover_targets(resolve_model(base_model), tuple(targets))
    spec = encoder or EncoderSpec(kind="sentence-transformers", name=BUNDLED_ENCODER, dim=384)
    spec = build_encoder(spec).spec  # learn the true embedding size
    meta = CheckpointMeta(hypernet=config, base_model=base_model, layout=layout, encoder=spec, trained=False,
                          info={"seed": seed, "created_by": "text2lora init"})
    return save_checkpoint(build_from_meta(meta, seed=seed), meta, out_dir)


def default_checkpoint() -> Path:
    """The shipped trained checkpoint if there is one; otherwise a fresh one (created once, with a warning)."""
    if (SHIPPED_CHECKPOINT / "t2l_config.json").is_file():
        return SHIPPED_CHECKPOINT
    fresh = home() / "checkpoints" / "fresh-smollm2-L"
    log.warning(
        "no trained checkpoint is shipped yet: using a freshly initialised hypernetwork (%s); "
        "its adapters leave the base model unchanged until it is trained", fresh,
    )
    if not (fresh / "t2l_config.json").is_file():
        init_checkpoint(fresh)
    else:
        read_meta(fresh)
    return fresh
