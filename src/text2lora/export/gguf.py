"""LoRA adapters for llama.cpp and Ollama: a GGUF file from a PEFT LoRA (files on disk or generated in memory).

llama.cpp's adapter contract (its ``convert_lora_to_gguf.py`` writes it, ``llama_adapter_lora_init`` reads it):

* keys ``general.architecture`` (the base's, e.g. ``llama``), ``general.type = "adapter"``, ``adapter.type =
  "lora"`` and ``adapter.lora.alpha`` (float32);
* per adapted weight ``W`` named as in the base GGUF (``blk.N.attn_q.weight``): ``W.lora_a`` = PEFT's A and
  ``W.lora_b`` = PEFT's B, in torch's shapes (r, d_in) and (d_out, r) (ggml's ``ne`` are the reverse);
* the rows of q_proj/k_proj weights are permuted the way the base model's conversion permuted them (Llama's
  rotary layout, per head: interleaved halves), so B gets the same row permutation and A none;
* llama.cpp scales by ``alpha / r`` (r from each tensor's shape): rsLoRA's ``alpha / sqrt(r)`` is written as
  ``alpha * sqrt(r)``, which llama.cpp's converter does not do (it drops ``use_rslora``).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from text2lora.errors import Text2LoraError
from text2lora.paths import atomic_write_bytes

OUTTYPES = ("f32", "f16")
#: HF architectures -> llama.cpp's architecture name; these are the ones llama.cpp converts as Llama (q/k permuted).
ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama"}
_PREFIX = "base_model.model."
_SUFFIXES = {".lora_A.weight": "A", ".lora_B.weight": "B"}
_PROVENANCE_KEYS = ("text2lora_description", "text2lora_base_model", "text2lora_examples")
"""What a GGUF keeps of an adapter's text2lora.json (as ``text2lora.description`` ...): no timestamps."""


@dataclass(frozen=True)
class GgufBase:
    """What the export needs to know about the base model (from its config; no weights are read)."""

    architecture: str  #: llama.cpp's name, e.g. ``llama``
    hf_architecture: str
    n_layers: int
    n_head: int
    n_kv_head: int
    tied_embeddings: bool

    @classmethod
    def from_config(cls, config, name: str = "the base model") -> GgufBase:
        by_type = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}  # a config without architectures
        arch = (getattr(config, "architectures", None) or [by_type.get(config.model_type, config.model_type)])[0]
        if arch not in ARCHITECTURES:
            raise Text2LoraError(f"GGUF export supports {', '.join(ARCHITECTURES)} bases; {name} is {arch}, "
                                 "whose llama.cpp tensor layout text2lora does not map")
        n_head = int(config.num_attention_heads)
        return cls(ARCHITECTURES[arch], arch, int(config.num_hidden_layers), n_head,
                   int(getattr(config, "num_key_value_heads", None) or n_head),
                   bool(getattr(config, "tie_word_embeddings", False)))

    @classmethod
    def of(cls, name: str) -> GgufBase:
        """The base named by a hub id, folder or ``bundled:`` name (the bundled upstream id reads offline)."""
        from text2lora.models.bundled import resolve_base_config
        from text2lora.models.targets import load_model_config

        return cls.from_config(load_model_config(resolve_base_config(name)), name)


def gguf_alpha(alpha: float, rank: int, use_rslora: bool) -> float:
    """``adapter.lora.alpha`` such that llama.cpp's ``alpha / r`` equals PEFT's scale."""
    return alpha * math.sqrt(rank) if use_rslora else alpha


def rotary_permute(b: torch.Tensor, n_head: int) -> torch.Tensor:
    """Llama's q/k row order in GGUF: per head, rows (h, 2, d/2) become (h, d/2, 2). b (d_out, r) -> (d_out, r)."""
    d_out = b.shape[0]
    if d_out % (2 * n_head):
        raise Text2LoraError(f"a q/k LoRA with {d_out} output rows does not split into {n_head} rotary heads")
    return b.reshape(n_head, 2, d_out // n_head // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def _pairs(tensors: dict[str, torch.Tensor], where: str) -> dict[str, dict[str, torch.Tensor]]:
    """PEFT keys grouped by module path: ``{path: {"A": (r, d_in), "B": (d_out, r)}}``."""
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        side = next((s for suffix, s in _SUFFIXES.items() if key.endswith(suffix)), None)
        if "lora_embedding_" in key:
            raise Text2LoraError(f"{where} adapts the token embeddings ({key}); the GGUF export takes LoRAs on "
                                 "linear layers only")
        if side is None or not key.startswith(_PREFIX):
            raise Text2LoraError(f"{where} holds {key}, which is not a LoRA A/B weight (llama.cpp adapters hold "
                                 "only those: no biases, no modules_to_save)")
        path = key[len(_PREFIX):-len(".lora_A.weight")]
        pairs.setdefault(path, {})[side] = value
    for path, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise Text2LoraError(f"{where} has lora_A without lora_B (or the reverse) for {path}")
    if not pairs:
        raise Text2LoraError(f"{where} holds no LoRA weights")
    return pairs


def gguf_tensors(tensors: dict[str, torch.Tensor], base: GgufBase, *, rank: int,
                 where: str = "the adapter") -> dict[str, torch.Tensor]:
    """PEFT LoRA tensors -> llama.cpp's names and layout (B of q/k rotary-permuted), float32, in a fixed order."""
    import gguf

    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, base.architecture.upper()), base.n_layers)
    out: dict[str, torch.Tensor] = {}
    for path, pair in sorted(_pairs(tensors, where).items(), key=lambda kv: _natural(kv[0])):
        a, b = pair["A"].float(), pair["B"].float()  # (r, d_in), (d_out, r)
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise Text2LoraError(f"{where}: {path} has A {tuple(a.shape)} and B {tuple(b.shape)}, not (r, d_in) "
                                 "and (d_out, r)")
        if a.shape[0] != rank:
            raise Text2LoraError(f"{where}: {path} has rank {a.shape[0]}, the adapter config says r={rank} "
                                 "(per-module ranks are not exported)")
        module = path.rsplit(".", 1)[-1]
        if module == "lm_head" and base.tied_embeddings:
            raise Text2LoraError(f"{where} adapts lm_head, which this base ties to its token embeddings: llama.cpp "
                                 "has no separate output weight to apply it to")
        name = names.get_name(f"{path}.weight", try_suffixes=(".weight",))
        if name is None:
            raise Text2LoraError(f"{where} adapts {path}, which has no llama.cpp tensor in a {base.n_layers}-layer "
                                 f"{base.hf_architecture} (another base model, or a module llama.cpp does not adapt)")
        if module == "q_proj":
            b = rotary_permute(b, base.n_head)
        elif module == "k_proj":
            b = rotary_permute(b, base.n_kv_head)
        out[f"{name}.lora_a"], out[f"{name}.lora_b"] = a.contiguous(), b.contiguous()
    return out


def _natural(path: str) -> list:
    """Sort key that puts layer 2 before layer 10."""
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def gguf_bytes(tensors: dict[str, torch.Tensor], base: GgufBase, *, rank: int, alpha: float, use_rslora: bool,
               outtype: str = "f32", metadata: dict[str, str] | None = None, where: str = "the adapter") -> bytes:
    """The GGUF file (as bytes) of one PEFT LoRA state dict; same input, same bytes."""
    import gguf

    if outtype not in OUTTYPES:
        raise Text2LoraError(f"unknown {{outtype}} {outtype!r}; choose {' or '.join(OUTTYPES)}")
    dtype = np.float16 if outtype == "f16" else np.float32
    arrays = {}
    for name, t in gguf_tensors(tensors, base, rank=rank, where=where).items():
        array = t.numpy().astype(dtype)
        if not np.isfinite(array).all():
            raise Text2LoraError(f"{where}: {name} does not fit in {outtype} (not finite); use {{outtype}} f32")
        arrays[name] = array
    with tempfile.TemporaryDirectory(prefix="text2lora-gguf-") as tmp:
        path = Path(tmp) / "adapter.gguf"
        writer = gguf.GGUFWriter(path, base.architecture)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, gguf_alpha(alpha, rank, use_rslora))
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32)
        writer.add_name("text2lora adapter")
        for key, value in sorted((metadata or {}).items()):
            writer.add_string(f"text2lora.{key.removeprefix('text2lora_')}", value)
        for name, array in arrays.items():
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


def _check_out(out: Path) -> Path:
    if out.is_dir():
        raise Text2LoraError(f"{out} is a directory; the GGUF export writes one file (e.g. {out / 'adapter.gguf'})")
    return out


def save_gguf_adapter(weights, out: str | os.PathLike, *, base: GgufBase, index: int = 0, outtype: str = "f32",
                      metadata: dict[str, str] | None = None) -> Path:
    """Write adapter ``index`` of a :class:`~text2lora.lora.LoraWeights` as a llama.cpp GGUF LoRA, atomically."""
    from text2lora.lora import peft_state_dict

    out = _check_out(Path(out))
    data = gguf_bytes(peft_state_dict(weights, index), base, rank=weights.rank, alpha=weights.alpha,
                      use_rslora=weights.use_rslora, outtype=outtype, metadata=metadata)
    atomic_write_bytes(out, data)
    return out


def convert_peft_adapter(adapter_dir: str | os.PathLike, out: str | os.PathLike, *, base_model: str | None = None,
                         outtype: str = "f32") -> Path:
    """Convert a PEFT LoRA directory to a llama.cpp GGUF LoRA file.

    The base model's config (architecture, heads, tied embeddings) comes from ``base_model``, else the local base
    the adapter's ``text2lora.json`` names (when it is on this machine), else its ``base_model_name_or_path`` (the
    bundled base's hub id reads offline; other hub ids from the Hugging Face cache or the hub)."""
    adapter_dir = Path(adapter_dir)
    cfg = _lora_config(adapter_dir)
    return _convert(adapter_dir, cfg, Path(out), GgufBase.of(_base_name(adapter_dir, cfg, base_model)), outtype)


def _base_name(adapter_dir: Path, cfg: dict, base_model: str | None) -> str:
    from text2lora.lora import read_provenance

    if base_model:
        return base_model
    local = read_provenance(adapter_dir).get("text2lora_base_model")
    if isinstance(local, str) and (local.startswith("bundled:") or Path(local).is_dir()):
        return local
    name = cfg.get("base_model_name_or_path")
    if not name:
        raise Text2LoraError(f"{adapter_dir}'s config names no base model; give {{base_model}}")
    return name


def _lora_config(adapter_dir: Path) -> dict:
    """A PEFT adapter config that a llama.cpp LoRA can express (else a one-line error naming what it cannot)."""
    from text2lora.lora import PEFT_CONFIG
    from text2lora.paths import read_json

    if not (adapter_dir / PEFT_CONFIG).is_file():
        raise Text2LoraError(f"{adapter_dir} is not a PEFT adapter directory (it has no {PEFT_CONFIG})")
    cfg = read_json(adapter_dir / PEFT_CONFIG, "adapter config")
    if not isinstance(cfg, dict) or cfg.get("peft_type") != "LORA":
        kind = cfg.get("peft_type") if isinstance(cfg, dict) else None
        raise Text2LoraError(f"{adapter_dir} is a {kind or 'unknown'} adapter, not a LoRA: llama.cpp takes LoRAs only")
    for key, what in (("use_dora", "DoRA"), ("modules_to_save", "modules_to_save (full weights)"),
                      ("rank_pattern", "per-module ranks"), ("alpha_pattern", "per-module alphas"),
                      ("layer_replication", "layer replication")):
        if cfg.get(key):
            raise Text2LoraError(f"{adapter_dir} uses {what}, which a llama.cpp LoRA cannot hold")
    if cfg.get("bias", "none") != "none":
        raise Text2LoraError(f"{adapter_dir} trains biases (bias={cfg['bias']!r}); llama.cpp LoRAs have none")
    try:
        cfg["r"], cfg["lora_alpha"] = int(cfg["r"]), float(cfg["lora_alpha"])
    except (KeyError, TypeError, ValueError):
        raise Text2LoraError(f"{adapter_dir}/{PEFT_CONFIG} has no valid r and lora_alpha") from None
    return cfg


def _convert(adapter_dir: Path, cfg: dict, out: Path, base: GgufBase, outtype: str) -> Path:
    from text2lora.lora import PEFT_WEIGHTS, read_provenance
    from text2lora.paths import read_safetensors

    meta = {k: str(v) for k, v in read_provenance(adapter_dir).items() if k in _PROVENANCE_KEYS}
    out = _check_out(out)
    data = gguf_bytes(read_safetensors(adapter_dir / PEFT_WEIGHTS, "adapter weights"), base, rank=cfg["r"],
                      alpha=cfg["lora_alpha"], use_rslora=bool(cfg.get("use_rslora", False)), outtype=outtype,
                      metadata=meta, where=str(adapter_dir))
    atomic_write_bytes(out, data)
    return out


def save_gguf_adapters(t2l, descriptions: list[str], outs: list[str | os.PathLike], *, outtype: str = "f32",
                       examples=None, batch_size: int | None = None) -> list[Path]:
    """Generate one llama.cpp GGUF LoRA per description: exactly :meth:`T2L.save_adapters` followed by
    :func:`convert_peft_adapter` of each adapter (the same bytes), a batch at a time through a temporary directory."""
    from text2lora.api import GENERATE_BATCH
    from text2lora.examples import example_rows

    if outtype not in OUTTYPES:
        raise Text2LoraError(f"unknown {{outtype}} {outtype!r}; choose {' or '.join(OUTTYPES)}")
    if len(descriptions) != len(outs):
        raise Text2LoraError("one output file per description is needed")
    outs = [_check_out(Path(o)) for o in outs]
    base = GgufBase.of(t2l.meta.base_model)  # an unmapped base is refused before anything is generated
    rows = None if examples is None else example_rows(examples, len(descriptions))
    batch_size = batch_size or GENERATE_BATCH
    paths = []
    for start in range(0, len(descriptions), batch_size):
        chunk = descriptions[start:start + batch_size]
        with tempfile.TemporaryDirectory(prefix="text2lora-gguf-") as tmp:
            dirs = t2l.save_adapters(chunk, [Path(tmp) / str(i) for i in range(len(chunk))], batch_size=batch_size,
                                     examples=None if rows is None else rows[start:start + batch_size])
            paths += [_convert(d, _lora_config(d), out, base, outtype)
                      for d, out in zip(dirs, outs[start:start + batch_size])]
    return paths
