"""LoRA weights: a container for generated A/B, per-sample application inside a batch, PEFT export and import.

The concept lives here, once: :class:`LoraWeights` (factors, the target layout and the
:class:`~text2lora.config.LoraConfig` that gives rank, alpha and the one scale formula), :func:`apply_lora`
(forward hooks on the target ``nn.Linear`` modules, so the base model is untouched and one batch can carry a
different adapter for every sample: for input x (B, T, d_in), ``y += s * (x A_b^T) B_b^T`` with two batched
matmuls), and the one PEFT writer :func:`peft_files`, whose bytes the CLI, the API, the server's adapter store and
its HTTP download all write (:func:`save_peft_adapter`, :func:`peft_zip`), read back by :func:`load_peft_adapter`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from text2lora.config import LoraConfig
from text2lora.errors import Text2LoraError
from text2lora.models.targets import TargetLayout
from text2lora.paths import atomic_dir, check_out_path

PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
PROVENANCE = "text2lora.json"
"""Beside PEFT's two files: where the adapter came from (description, base model); PEFT ignores it."""
_PREFIX = "base_model.model."


@dataclass
class LoraWeights:
    """LoRA factors for N adapters over every target of a layout.

    ``factors[module] = (A (N, L, r, d_in), B (N, L, d_out, r))``; the update of layer l is ``scale * B[l] @ A[l]``.
    """

    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    layout: TargetLayout
    config: LoraConfig

    def __post_init__(self) -> None:
        for name, (a, b) in self.factors.items():
            spec = self.layout.spec(name)
            n, layers = a.shape[0], self.layout.n_layers
            if a.shape != (n, layers, self.rank, spec.d_in) or b.shape != (n, layers, spec.d_out, self.rank):
                raise Text2LoraError(
                    f"LoRA factors for {name} have shapes {tuple(a.shape)} / {tuple(b.shape)}; expected "
                    f"(N, {layers}, {self.rank}, {spec.d_in}) / (N, {layers}, {spec.d_out}, {self.rank})"
                )

    @property
    def rank(self) -> int:
        return self.config.rank

    @property
    def alpha(self) -> float:
        return self.config.alpha

    @property
    def use_rslora(self) -> bool:
        return self.config.use_rslora

    @property
    def scale(self) -> float:
        return self.config.scale

    @property
    def n(self) -> int:
        return next(iter(self.factors.values()))[0].shape[0]

    def select(self, index: int | slice | torch.Tensor) -> LoraWeights:
        """A subset of the N adapters (an int keeps a batch dimension of 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return replace(self, factors={k: (a[index], b[index]) for k, (a, b) in self.factors.items()})

    def to(self, *args, **kwargs) -> LoraWeights:
        return replace(self, factors={k: (a.to(*args, **kwargs), b.to(*args, **kwargs)) for k, (a, b) in self.factors.items()})

    def detach(self) -> LoraWeights:
        return replace(self, factors={k: (a.detach(), b.detach()) for k, (a, b) in self.factors.items()})

    @staticmethod
    def cat(items: list[LoraWeights]) -> LoraWeights:
        """Stack adapters from several containers along N (same layout and rank)."""
        first = items[0]
        for other in items[1:]:
            if other.rank != first.rank or not other.layout.compatible_with(first.layout) or other.scale != first.scale:
                raise Text2LoraError("cannot batch adapters of different layouts, ranks or scales")
        factors = {
            k: (torch.cat([w.factors[k][0] for w in items]), torch.cat([w.factors[k][1] for w in items]))
            for k in first.factors
        }
        return replace(first, factors=factors)

    def delta(self, module: str, layer: int, index: int = 0) -> torch.Tensor:
        """The dense update ``scale * B @ A`` (d_out, d_in) of one adapter at one layer."""
        a, b = self.factors[module]
        return self.scale * b[index, layer] @ a[index, layer]


def _lora_hook(a: torch.Tensor, b: torch.Tensor, scale: float, dropout: float):
    """A forward hook adding the per-sample update; a (N, r, d_in), b (N, d_out, r)."""

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        x = inputs[0]  # (B, T, d_in)
        if x.shape[0] != a.shape[0]:
            if a.shape[0] != 1:
                raise RuntimeError(f"batch of {x.shape[0]} inputs but {a.shape[0]} adapters")
            aa, bb = a.expand(x.shape[0], -1, -1), b.expand(x.shape[0], -1, -1)
        else:
            aa, bb = a, b
        if dropout:
            x = nn.functional.dropout(x, dropout, training=True)
        flat = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, T, d_in)
        h = torch.bmm(flat, aa.to(x.dtype).transpose(1, 2))  # (B, T, r)
        delta = torch.bmm(h, bb.to(x.dtype).transpose(1, 2))  # (B, T, d_out)
        return output + scale * delta.reshape(output.shape)

    return hook


@contextlib.contextmanager
def apply_lora(model: nn.Module, weights: LoraWeights, *, dropout: float = 0.0) -> Iterator[nn.Module]:
    """Within the block, ``model``'s forward adds adapter i to sample i of the batch (or one adapter to all).

    Gradients flow into ``weights`` (for hypernetwork training). ``dropout`` (training only: pass 0 to
    evaluate) drops LoRA inputs; the frozen base model itself stays in eval mode.
    """
    modules = dict(model.named_modules())
    handles = []
    try:
        for spec in weights.layout.targets:
            if spec.name not in weights.factors:
                continue
            a, b = weights.factors[spec.name]
            for layer, path in enumerate(spec.paths):
                target = modules.get(path)
                if target is None:
                    raise Text2LoraError(f"the model has no module {path}: the adapter was made for another model")
                if getattr(target, "in_features", None) != spec.d_in or getattr(target, "out_features", None) != spec.d_out:
                    raise Text2LoraError(
                        f"{path} is {getattr(target, 'in_features', '?')}->{getattr(target, 'out_features', '?')}, "
                        f"the adapter expects {spec.d_in}->{spec.d_out}: it was made for another model"
                    )
                handles.append(target.register_forward_hook(_lora_hook(a[:, layer], b[:, layer], weights.scale, dropout)))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def peft_state_dict(weights: LoraWeights, index: int = 0) -> dict[str, torch.Tensor]:
    """PEFT's key names: ``base_model.model.<path>.lora_A.weight`` (r, d_in) and ``lora_B.weight`` (d_out, r)."""
    tensors = {}
    for spec in weights.layout.targets:
        if spec.name not in weights.factors:
            continue
        a, b = weights.factors[spec.name]
        for layer, path in enumerate(spec.paths):
            tensors[f"{_PREFIX}{path}.lora_A.weight"] = a[index, layer].detach().to("cpu", torch.float32).contiguous()
            tensors[f"{_PREFIX}{path}.lora_B.weight"] = b[index, layer].detach().to("cpu", torch.float32).contiguous()
    return tensors


def peft_lora_config(weights: LoraWeights, base_model_name_or_path: str):
    """A ``peft.LoraConfig`` for the adapter; PEFT itself writes adapter_config.json (so PEFT, vLLM and
    lm-eval read it as their own)."""
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=weights.rank,
        lora_alpha=weights.alpha,
        use_rslora=weights.use_rslora,
        target_modules=sorted(weights.factors),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model_name_or_path,
    )


def adapter_provenance(description: str, base_model: str, examples=()) -> dict[str, str]:
    """What every written adapter says about where it came from (CLI, API, server store, HTTP download alike).
    Worked examples are recorded by count and digest, never by content."""
    out = {"text2lora_description": description[:2000], "text2lora_base_model": base_model}
    if examples:
        from text2lora.examples import examples_digest

        out["text2lora_examples"] = f"{len(examples)} examples, sha256:{examples_digest(examples)}"
    return out


def peft_files(weights: LoraWeights, *, base_model_name_or_path: str, index: int = 0,
               metadata: dict[str, str] | None = None) -> dict[str, bytes]:
    """The files of adapter ``index`` as a standard PEFT adapter directory, as bytes: ``adapter_config.json``
    (written by PEFT), ``adapter_model.safetensors`` and, with ``metadata``, ``text2lora.json``. Same input, same
    bytes: the safetensors header keeps only ``format``, since safetensors writes extra keys in random order."""
    import tempfile

    from safetensors.torch import save

    from text2lora.paths import json_text

    files = {PEFT_WEIGHTS: save(peft_state_dict(weights, index), metadata={"format": "pt"})}
    with tempfile.TemporaryDirectory(prefix="text2lora-peft-") as tmp:
        peft_lora_config(weights, base_model_name_or_path).save_pretrained(tmp)
        files[PEFT_CONFIG] = (Path(tmp) / PEFT_CONFIG).read_bytes()
    if metadata:
        files[PROVENANCE] = json_text(metadata).encode()
    return files


def save_peft_adapter(
    weights: LoraWeights,
    out_dir: str | os.PathLike,
    *,
    base_model_name_or_path: str,
    index: int = 0,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write adapter ``index`` as a PEFT adapter directory (:func:`peft_files`), atomically."""
    out_dir = check_out_path(out_dir)
    if out_dir.exists() and out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / PEFT_CONFIG).exists():
        raise Text2LoraError(f"{out_dir} exists, is not empty and is not an adapter directory; refusing to replace it")
    files = peft_files(weights, base_model_name_or_path=base_model_name_or_path, index=index, metadata=metadata)
    try:
        with atomic_dir(out_dir) as tmp:
            for name, data in files.items():
                (tmp / name).write_bytes(data)
    except PermissionError as e:
        raise Text2LoraError(f"cannot write {out_dir}: {e.strerror}") from None
    return out_dir


def peft_zip(weights: LoraWeights, folder: str, *, base_model_name_or_path: str,
             metadata: dict[str, str] | None = None) -> bytes:
    """The same files as :func:`save_peft_adapter` writes, in one zip archive under ``folder/``."""
    import io
    import zipfile

    buf = io.BytesIO()
    files = peft_files(weights, base_model_name_or_path=base_model_name_or_path, metadata=metadata)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items()):
            zf.writestr(f"{folder}/{name}", data)
    return buf.getvalue()


def load_peft_adapter(adapter_dir: str | os.PathLike, layout: TargetLayout) -> LoraWeights:
    """Read a PEFT LoRA directory into a one-adapter :class:`LoraWeights` over ``layout``'s model."""
    from text2lora.paths import read_json, read_safetensors

    adapter_dir = Path(adapter_dir)
    cfg = read_json(adapter_dir / PEFT_CONFIG, "adapter config")
    if cfg.get("peft_type", "LORA") != "LORA":
        raise Text2LoraError(f"{adapter_dir} is a {cfg.get('peft_type')} adapter, not LoRA")
    tensors = read_safetensors(adapter_dir / PEFT_WEIGHTS, "adapter weights")
    rank = int(cfg.get("r", 8))
    by_path = {}
    for key, value in tensors.items():
        if not key.startswith(_PREFIX) or not key.endswith(".weight"):
            raise Text2LoraError(f"{adapter_dir}: unexpected tensor {key}")
        stem = key[len(_PREFIX) : -len(".weight")]
        path, _, side = stem.rpartition(".")
        by_path.setdefault(path, {})[side] = value
    factors = {}
    for spec in layout.targets:
        if not any(p in by_path for p in spec.paths):
            continue
        a_list, b_list = [], []
        for path in spec.paths:
            pair = by_path.pop(path, None)
            if pair is None or set(pair) != {"lora_A", "lora_B"}:
                raise Text2LoraError(f"{adapter_dir}: missing lora_A/lora_B for {path}")
            a_list.append(pair["lora_A"])
            b_list.append(pair["lora_B"])
        factors[spec.name] = (torch.stack(a_list)[None].float(), torch.stack(b_list)[None].float())
    if by_path:
        raise Text2LoraError(
            f"{adapter_dir} adapts modules this model's layout does not have (e.g. {next(iter(by_path))}): "
            "it was made for another base model or other targets"
        )
    if not factors:
        raise Text2LoraError(f"{adapter_dir} holds no LoRA weights for this model")
    sub = TargetLayout(layout.model_type, layout.n_layers, tuple(t for t in layout.targets if t.name in factors))
    config = LoraConfig(rank=rank, alpha=float(cfg.get("lora_alpha", 8)), use_rslora=bool(cfg.get("use_rslora", False)),
                        dropout=0.0)
    return LoraWeights(factors, sub, config)


def read_provenance(adapter_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``text2lora.json`` of an adapter directory ({} when it has none)."""
    from text2lora.paths import read_json

    path = Path(adapter_dir) / PROVENANCE
    return read_json(path, "adapter provenance") if path.is_file() else {}
