"""Typed configs, one per concern. YAML/JSON in, JSON out; every field documented and validated.

Training and evaluation configs live beside their code (``text2lora.train.config``, ``text2lora.eval``); this file
holds what the core needs: the hypernetwork's architecture and the LoRA it emits.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text2lora.checks import MAX_DIM, int_in, short_repr
from text2lora.errors import Text2LoraError

VARIANTS = ("L", "M", "S")
#: Residual trunk blocks per variant. S spends one more block: its heads are 8x smaller than M's (one rank row
#: at a time), and with it the count matches the paper's 5.0M at Mistral-7B shapes.
DEFAULT_BLOCKS = {"L": 2, "M": 2, "S": 3}


@dataclass
class LoraConfig:
    """The LoRA the hypernetwork emits."""

    rank: int = 8  #: LoRA rank r
    alpha: float = 16.0  #: LoRA alpha; the update is scaled by alpha/sqrt(r) (rsLoRA) or alpha/r
    use_rslora: bool = True  #: rank-stabilised scaling alpha/sqrt(r)
    dropout: float = 0.05  #: dropout on the LoRA input during training (never at inference)

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise Text2LoraError(f"lora.rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise Text2LoraError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise Text2LoraError(f"lora.alpha must be a finite number > 0, got {self.alpha}")
        int_in(self.rank, "lora.rank", 1, MAX_DIM)

    @property
    def scale(self) -> float:
        return self.alpha / (self.rank**0.5 if self.use_rslora else self.rank)


POOLINGS = ("mean", "attention")


@dataclass
class ExamplesConfig:
    """How the hypernetwork reads worked examples beside the description (``T2L+shots``).

    Each example's input and output are encoded separately by the description encoder; a small pair network reads
    ``[input, output, input * output]`` (so pairing an input with another example's output changes the code),
    the k pair codes are pooled and projected, and the result is *added* to the projected description. That last
    projection starts at zero, so k = 0, and any k before training, gives exactly the description-only adapter."""

    max_examples: int = 8  #: K: the most examples one adapter is generated from
    pooling: str = "attention"  #: "mean" of the pair codes, or "attention" with the description as the query
    hidden: int = 256  #: width of the pair network

    def __post_init__(self) -> None:
        if not 1 <= self.max_examples <= 64:
            raise Text2LoraError(f"hypernet.examples.max_examples must be in 1..64, got {self.max_examples}")
        if self.pooling not in POOLINGS:
            raise Text2LoraError(f"hypernet.examples.pooling must be one of {', '.join(POOLINGS)}, got "
                                 f"{self.pooling!r}")
        if not 1 <= self.hidden <= 8192:
            raise Text2LoraError(f"hypernet.examples.hidden must be in 1..8192, got {self.hidden}")


@dataclass
class HyperNetConfig:
    """Architecture of the T2L hypernetwork (paper defaults)."""

    variant: str = "L"  #: L (A and B from one head), M (one head shared by A and B), S (one rank row at a time)
    latent: int = 128  #: trunk width; the task projection takes latent/2, layer and module embeddings latent/4 each
    head_in: int = 512  #: width of the trunk's last layer, the input of the output heads
    n_blocks: int | None = None  #: residual MLP blocks in the trunk (None: 2 for L and M, 3 for S)
    dropout: float = 0.05  #: dropout inside the trunk
    lora: LoraConfig = field(default_factory=LoraConfig)
    examples: ExamplesConfig | None = None  #: also condition on worked examples (None: the description only)
    #: add a learned per-(layer, module) A and B to every generated adapter (the "AB offset"): with it, training
    #: can start from a LoRA (SFTConfig.init_lora, e.g. the multi-task LoRA) and learn the task-specific part on top
    offset: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = from_dict(LoraConfig, self.lora, "lora")
        if isinstance(self.examples, dict):
            self.examples = from_dict(ExamplesConfig, self.examples, "hypernet.examples")
        if self.variant not in VARIANTS:
            raise Text2LoraError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.latent < 8 or self.latent % 4:
            raise Text2LoraError(f"latent must be a multiple of 4 and >= 8, got {self.latent}")
        if self.head_in < 1:
            raise Text2LoraError(f"head_in must be >= 1, got {self.head_in}")
        if self.n_blocks is None:
            self.n_blocks = DEFAULT_BLOCKS[self.variant]
        if self.n_blocks < 1:
            raise Text2LoraError(f"n_blocks must be >= 1, got {self.n_blocks}")
        if not 0.0 <= self.dropout < 1.0:
            raise Text2LoraError(f"dropout must be in [0, 1), got {self.dropout}")
        int_in(self.latent, "latent", 8, MAX_DIM)
        int_in(self.head_in, "head_in", 1, MAX_DIM)
        int_in(self.n_blocks, "n_blocks", 1, 64)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["examples"] is None:  # description-only checkpoints stay readable by text2lora before examples
            del out["examples"]
        if not out["offset"]:
            del out["offset"]
        return out


def from_dict(cls, data: Any, where: str = "config"):
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types name the key."""
    if not isinstance(data, dict):
        raise Text2LoraError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise Text2LoraError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _check_type(value, fields[name].type, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise Text2LoraError(f"{where}: {e}") from None


_SIMPLE = {"int": int, "float": (int, float), "str": str, "bool": bool}


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Check scalars against a field's (string) annotation; nested dataclasses are converted by their owner."""
    ann = str(annotation).replace(" ", "")
    options = ann.split("|")
    if value is None:
        if "None" in options:
            return None
        raise Text2LoraError(f"{where} must not be null")
    for opt in options:
        expected = _SIMPLE.get(opt)
        if expected is None:
            return value  # containers and nested configs: validated where they are built
        if opt in ("int", "float") and isinstance(value, bool):
            continue
        if isinstance(value, expected):
            return float(value) if opt == "float" else value
        if opt == "float" and isinstance(value, str):
            try:  # PyYAML (YAML 1.1) reads 3e-4 as a string; it means the number
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return number
    raise Text2LoraError(f"{where} must be {ann.replace('|', ' or ')}, got {type(value).__name__} {short_repr(value)}")


def load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` for text from users, every failure one error naming ``where``. Aliases (``*name``) are
    refused: nine nested aliases of nine items expand to 9**9 values (an "alias bomb"), and configs need none."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                line = self.peek_event().start_mark.line + 1
                raise Text2LoraError(f"{where} uses a YAML alias (line {line}); write the value out instead")
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=NoAliases)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        raise Text2LoraError(f"{where} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise Text2LoraError(f"{where} nests YAML deeper than Python can read") from None
    except (ValueError, OverflowError) as e:  # a date like 2024-13-45, an integer of more than 4300 digits
        raise Text2LoraError(f"{where} holds a value YAML cannot convert ({str(e)[:80]})") from None


def read_yaml_mapping(path: str | os.PathLike, what: str = "config") -> dict[str, Any]:
    """A YAML file that must hold a mapping (empty: ``{}``), with one-line errors that name it."""

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Text2LoraError(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Text2LoraError(f"cannot read {what} {path}: {getattr(e, 'strerror', None) or e}") from None
    loaded = load_yaml(text, f"{what} {path}")
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise Text2LoraError(f"{what} {path} must be a mapping")
    return loaded


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``loop.steps``) in a nested mapping, in place; returns it."""
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise Text2LoraError(f"cannot override {dotted}: {p} is not a section")
        node[leaf] = value
    return data
