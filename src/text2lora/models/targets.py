"""Target-module discovery: (module, layer) -> (d_in, d_out), from a model's *config* alone.

The model is instantiated on the ``meta`` device (no memory, no weights), so the shapes and module paths are
exactly what transformers builds for that architecture: GQA (``num_key_value_heads``), an explicit ``head_dim``
(Gemma), fused projections (Phi-3's ``qkv_proj``) and multimodal wrappers (Gemma 3) all come out right without a
per-family table. A 7B config takes about a second.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from text2lora.checks import MAX_CONFIG_INT, MAX_LAYERS, int_in, short_repr
from text2lora.errors import Text2LoraError

DEFAULT_TARGETS = ("q_proj", "v_proj")
_LAYER_RE = re.compile(r"^(?P<prefix>.*?)\.?layers\.(?P<idx>\d+)\.(?P<rest>.+)$")
_NON_TEXT = ("vision", "visual", "audio", "image", "encoder.", "speech", "multi_modal_projector")


@dataclass(frozen=True)
class TargetSpec:
    """One target module type across all decoder layers."""

    name: str  #: short name, e.g. ``q_proj``
    d_in: int
    d_out: int
    paths: tuple[str, ...]  #: full module path per layer, e.g. ``model.layers.0.self_attn.q_proj``

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "d_in": self.d_in, "d_out": self.d_out, "paths": list(self.paths)}


@dataclass(frozen=True)
class TargetLayout:
    """Every target of a base model: what the hypernetwork generates and where each LoRA goes."""

    model_type: str
    n_layers: int
    targets: tuple[TargetSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets)

    @property
    def shapes(self) -> dict[str, tuple[int, int]]:
        return {t.name: (t.d_in, t.d_out) for t in self.targets}

    def spec(self, name: str) -> TargetSpec:
        for t in self.targets:
            if t.name == name:
                return t
        raise Text2LoraError(f"no target module {name!r} in this layout; it has {', '.join(self.names)}")

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "n_layers": self.n_layers, "targets": [t.to_dict() for t in self.targets]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetLayout:
        """A layout read from a file; every size is checked (``layout.targets[0].d_in`` must be an integer in
        bounds) before anything is built from it."""
        try:
            n_layers = int_in(d["n_layers"], "layout.n_layers", 1, MAX_LAYERS)
            targets = []
            for i, t in enumerate(d["targets"]):
                where = f"layout.targets[{i}]"
                if not isinstance(t["name"], str) or not isinstance(t["paths"], list) or \
                        not all(isinstance(p, str) for p in t["paths"]):
                    raise Text2LoraError(f"{where} needs a name and a list of module paths")
                targets.append(TargetSpec(t["name"], int_in(t["d_in"], f"{where}.d_in"),
                                          int_in(t["d_out"], f"{where}.d_out"), tuple(t["paths"])))
            layout = cls(str(d["model_type"]), n_layers, tuple(targets))
        except (KeyError, TypeError, ValueError) as e:
            raise Text2LoraError(f"malformed target layout: {short_repr(e)}") from None
        if not targets or len({t.name for t in targets}) != len(targets):
            raise Text2LoraError("malformed target layout: no targets, or one named twice")
        if any(len(t.paths) != layout.n_layers for t in targets):
            raise Text2LoraError("malformed target layout: a target does not cover every layer")
        return layout

    def compatible_with(self, other: TargetLayout) -> bool:
        return self.n_layers == other.n_layers and self.shapes == other.shapes

    def summary(self) -> str:
        """``"30 layers, q_proj 576->576, v_proj 576->192"``: how messages name a layout."""
        return f"{self.n_layers} layers, " + ", ".join(f"{n} {i}->{o}" for n, (i, o) in self.shapes.items())

    def require_fits(self, model_layout: TargetLayout, *, what: str, made_for: str, model: str) -> None:
        """Raise unless adapters for this layout (``what``, made for ``made_for``) fit ``model_layout``."""
        if not self.compatible_with(model_layout):
            raise Text2LoraError(f"{what} was made for {made_for} ({self.summary()}); "
                                 f"{model} differs ({model_layout.summary()})")


def load_model_config(source: Any):
    """A transformers config from a config object, a dict, a ``config.json`` path, a folder or a hub id."""
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(source, PretrainedConfig):
        return source
    if isinstance(source, dict):
        return _config_from_dict(source, "the given config")
    path = Path(str(source))
    if path.is_file():
        return _config_from_dict(_read_config_json(path), str(path))
    from text2lora.models.bundled import resolve_model

    resolved = resolve_model(str(source))
    if (Path(resolved) / "config.json").is_file():  # a folder: its config.json is checked like a file's
        check_model_config(_read_config_json(Path(resolved) / "config.json"), str(Path(resolved) / "config.json"))
    try:
        return AutoConfig.from_pretrained(resolved)
    except Exception as e:  # transformers validating a config file or hub id: whatever it raises is about the input
        raise Text2LoraError(f"cannot load the config of {source!r}: {_first_line(e)}") from None


def _read_config_json(path: Path) -> dict[str, Any]:
    from text2lora.paths import read_json

    d = read_json(path, "model config")
    if not isinstance(d, dict):
        raise Text2LoraError(f"model config {path} is not a JSON object")
    return d


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:200] if text else "") or type(e).__name__


_SIZE_KEY = re.compile(r"^(num_\w+|n_\w+|\w+_size|\w+_dim|head_dim)$")
_LAYER_KEYS = {"num_hidden_layers", "num_layers", "n_layer", "n_layers"}


def check_model_config(d: dict[str, Any], where: str, depth: int = 0) -> None:
    """Refuse size-like numbers no model has before transformers builds anything from them: negative or
    fractional sizes, more than :data:`~text2lora.checks.MAX_LAYERS` layers (1e7 layers would take minutes
    and gigabytes even on the meta device). Values of other types are left to transformers' own checks."""
    for key, value in d.items():
        if isinstance(value, dict) and key.endswith("_config") and depth < 2:
            check_model_config(value, f"{where}: {key}", depth + 1)
        if not isinstance(key, str) or not _SIZE_KEY.match(key) or isinstance(value, bool):
            continue
        if isinstance(value, float):
            if not value.is_integer():
                raise Text2LoraError(f"{where}: {key} must be an integer, got {short_repr(value)}")
            value = int(value)
        if isinstance(value, int):
            int_in(value, f"{where}: {key}", 0, MAX_LAYERS if key in _LAYER_KEYS else MAX_CONFIG_INT)


def _config_from_dict(d: dict[str, Any], where: str):
    from transformers import AutoConfig

    model_type = d.get("model_type")
    if not model_type or not isinstance(model_type, str):
        raise Text2LoraError(f"{where} has no 'model_type'")
    check_model_config(d, where)
    rest = {k: v for k, v in d.items() if k != "model_type"}
    try:
        return AutoConfig.for_model(model_type, **rest)
    except Exception as e:  # transformers' validation of the user's config (ValueError, strict-dataclass errors)
        raise Text2LoraError(f"{where}: unsupported model config ({_first_line(e)})") from None


def _meta_linears(config) -> dict[str, tuple[int, int]]:
    """Every nn.Linear of the model built from ``config`` on the meta device: path -> (d_in, d_out)."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from transformers import AutoModel

    try:
        try:
            with init_empty_weights(include_buffers=True):
                model = AutoModelForCausalLM.from_config(config)
        except ValueError:
            # Multimodal wrappers (e.g. Gemma 3) are not registered as causal LMs: fall back to the base model class.
            with init_empty_weights(include_buffers=True):
                model = AutoModel.from_config(config)
    except Exception as e:  # a config transformers accepted but cannot build (0 heads: ZeroDivisionError, ...)
        raise Text2LoraError(f"transformers cannot build a model for this config: {_first_line(e)}") from None
    return {n: (m.in_features, m.out_features) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def _text_layers(linears: dict[str, tuple[int, int]], n_layers: int | None):
    """Group Linear paths by their ``layers.N`` stack and pick the language model's stack."""
    stacks: dict[str, dict[int, dict[str, tuple[str, int, int]]]] = defaultdict(lambda: defaultdict(dict))
    for path, (d_in, d_out) in linears.items():
        m = _LAYER_RE.match(path)
        if not m:
            continue
        stacks[m["prefix"]][int(m["idx"])][m["rest"]] = (path, d_in, d_out)
    candidates = [p for p in stacks if not any(tag in p for tag in _NON_TEXT)] or list(stacks)
    if n_layers is not None:
        exact = [p for p in candidates if len(stacks[p]) == n_layers]
        candidates = exact or candidates
    if not candidates:
        raise Text2LoraError("found no decoder layers with Linear modules in this model")
    best = max(candidates, key=lambda p: len(stacks[p]))
    return stacks[best]


def _num_layers(config) -> int | None:
    text = getattr(config, "text_config", None) or config
    return getattr(text, "num_hidden_layers", None)


def discover_targets(config_source: Any, modules: tuple[str, ...] | list[str] = DEFAULT_TARGETS) -> TargetLayout:
    """Find each named Linear module in every decoder layer, with its shapes, without loading weights.

    ``modules`` are short names (``q_proj``) or dotted suffixes (``self_attn.q_proj``). Each must exist in every
    layer with one shape; an unknown name is an error that lists the modules the model has.
    """
    if not modules:
        raise Text2LoraError("no target modules given")
    if len(set(modules)) != len(modules):
        raise Text2LoraError(f"duplicate target modules in {list(modules)}")
    config = load_model_config(config_source)
    layers = _text_layers(_meta_linears(config), _num_layers(config))
    indices = sorted(layers)
    if indices != list(range(len(indices))):
        raise Text2LoraError(f"decoder layers are not numbered 0..N-1: {indices[:5]}...")
    available = sorted({rest.rsplit(".", 1)[-1] for layer in layers.values() for rest in layer})
    specs = []
    for name in modules:
        found: list[tuple[str, int, int]] = []
        for i in indices:
            hits = [v for rest, v in layers[i].items() if rest == name or rest.endswith("." + name)]
            if len(hits) > 1:
                raise Text2LoraError(f"target {name!r} is ambiguous in layer {i}: {[h[0] for h in hits]}")
            if not hits:
                raise Text2LoraError(
                    f"model ({config.model_type}) has no target module {name!r}; its layers have: "
                    + ", ".join(available)
                )
            found.append(hits[0])
        shapes = {(d_in, d_out) for _, d_in, d_out in found}
        if len(shapes) != 1:
            raise Text2LoraError(f"target {name!r} changes shape across layers ({sorted(shapes)}); not supported")
        (d_in, d_out), = shapes
        if d_in < 1 or d_out < 1:
            raise Text2LoraError(f"target {name!r} is {d_in}->{d_out} in this config; a LoRA needs both sizes >= 1")
        specs.append(TargetSpec(name.rsplit(".", 1)[-1], d_in, d_out, tuple(p for p, _, _ in found)))
    return TargetLayout(str(config.model_type), len(indices), tuple(specs))
