"""Hypernetwork checkpoints: a directory with ``t2l_config.json`` and ``hypernet.safetensors``.

Loading is strict: every tensor must be present with its shape, nothing extra; the JSON says which base model,
targets, encoder and LoRA settings the weights were made for, so a mismatch is caught before any model runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from text2lora import __version__
from text2lora.config import HyperNetConfig, from_dict
from text2lora.encoders import EncoderSpec
from text2lora.errors import Text2LoraError
from text2lora.hypernet import HyperNetwork, build_hypernetwork
from text2lora.lora import LoraWeights
from text2lora.models.targets import TargetLayout
from text2lora.paths import atomic_dir, read_json, read_safetensors

CONFIG_FILE = "t2l_config.json"
WEIGHTS_FILE = "hypernet.safetensors"
FORMAT = "text2lora.hypernet"
FORMAT_VERSION = 1


@dataclass
class CheckpointMeta:
    """Everything but the weights."""

    hypernet: HyperNetConfig
    base_model: str  #: name or path the base model is loaded from (``bundled:...``, hub id or directory)
    layout: TargetLayout
    encoder: EncoderSpec
    trained: bool = False  #: False for a fresh ``init`` (its adapters leave the base model unchanged)
    info: dict[str, Any] = field(default_factory=dict)  #: free-form provenance: seed, training run, scores

    def lora(self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> LoraWeights:
        """The hypernetwork's output as adapters over this checkpoint's layout and LoRA settings (the one place
        generated factors become :class:`~text2lora.lora.LoraWeights`)."""
        return LoraWeights(factors, self.layout, self.hypernet.lora)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "text2lora_version": __version__,
            "hypernet": self.hypernet.to_dict(),
            "base_model": self.base_model,
            "layout": self.layout.to_dict(),
            "encoder": self.encoder.to_dict(),
            "trained": self.trained,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str) -> CheckpointMeta:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise Text2LoraError(f"{where} is not a text2lora hypernetwork checkpoint")
        if d.get("format_version") != FORMAT_VERSION:
            raise Text2LoraError(
                f"{where} has format version {d.get('format_version')}; this text2lora reads {FORMAT_VERSION}"
            )
        try:
            return cls(
                hypernet=from_dict(HyperNetConfig, d["hypernet"], "hypernet"),
                base_model=str(d["base_model"]),
                layout=TargetLayout.from_dict(d["layout"]),
                encoder=EncoderSpec(**d["encoder"]),
                trained=bool(d.get("trained", False)),
                info=dict(d.get("info", {})),
            )
        except KeyError as e:
            raise Text2LoraError(f"{where} lacks the field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise Text2LoraError(f"{where}: {e}") from None


def build_from_meta(meta: CheckpointMeta, seed: int | None = 0) -> HyperNetwork:
    """The hypernetwork ``meta`` describes, after checking on the meta device that it has a sane size (a config
    saying ``latent: 4000000000`` is refused here, not by the allocator)."""
    from text2lora.checks import MAX_HYPERNET_PARAMS, int_in
    from text2lora.hypernet import count_parameters

    int_in(meta.encoder.dim, "encoder.dim", 1)

    def build(seed):
        return build_hypernetwork(meta.hypernet, encoder_dim=meta.encoder.dim, n_layers=meta.layout.n_layers,
                                  shapes=meta.layout.shapes, seed=seed)

    with torch.device("meta"):
        params = count_parameters(build(None))
    if params > MAX_HYPERNET_PARAMS:
        raise Text2LoraError(f"this hypernetwork would have {params:,} parameters; the limit is "
                             f"{MAX_HYPERNET_PARAMS:,} (check latent, head_in, the rank and the layout's sizes)")
    return build(seed)


def save_checkpoint(net: HyperNetwork, meta: CheckpointMeta, out_dir: str | os.PathLike) -> Path:
    """Write a checkpoint directory atomically (a killed save leaves the old one, or none)."""
    from safetensors.torch import save_file

    from text2lora.paths import check_out_path, write_json

    out_dir = check_out_path(out_dir)
    if out_dir.exists() and out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / CONFIG_FILE).exists():
        raise Text2LoraError(f"{out_dir} exists, is not empty and is not a text2lora checkpoint; refusing to replace it")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    try:
        with atomic_dir(out_dir) as tmp:
            save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
            write_json(tmp / CONFIG_FILE, meta.to_dict())
    except PermissionError as e:
        raise Text2LoraError(f"cannot write {out_dir}: {e.strerror}") from None
    return out_dir


def read_meta(ckpt_dir: str | os.PathLike) -> CheckpointMeta:
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise Text2LoraError(f"checkpoint directory not found: {ckpt_dir}")
    return CheckpointMeta.from_dict(read_json(ckpt_dir / CONFIG_FILE, "checkpoint config"), str(ckpt_dir / CONFIG_FILE))


def load_weights_into(net: HyperNetwork, state: dict[str, torch.Tensor], where: str,
                      may_lack: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``net`` strictly (every tensor present with its shape, nothing extra), except that
    parameters under the prefixes ``may_lack`` may be absent (they keep their initialisation)."""
    expected = net.state_dict()
    missing = sorted(k for k in set(expected) - set(state) if not k.startswith(may_lack))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise Text2LoraError(f"{where} does not match its config: "
                             + (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"))
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise Text2LoraError(f"{where}: {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
    net.load_state_dict(state, strict=False)


def load_checkpoint(ckpt_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[HyperNetwork, CheckpointMeta]:
    """Rebuild the hypernetwork from its config and load its weights strictly."""
    ckpt_dir = Path(ckpt_dir)
    meta = read_meta(ckpt_dir)
    net = build_from_meta(meta, seed=None)
    state = read_safetensors(ckpt_dir / WEIGHTS_FILE, "checkpoint weights")
    for k, v in state.items():  # a diverged run's weights would make NaN adapters that load without complaint
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise Text2LoraError(f"checkpoint {ckpt_dir}: {k} holds NaN or infinite values (a diverged training "
                                 "run?); it cannot make adapters")
    load_weights_into(net, state, f"checkpoint {ckpt_dir}")
    net.to(device)
    net.eval()
    return net, meta
