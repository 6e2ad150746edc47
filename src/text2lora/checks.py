"""Checks for numbers read from files, requests and the command line: integers in bounds, finite floats, and
a bounded ``repr`` for messages about values of any size.

Every config and file reader validates what it reads with these, where it reads it, naming the key (``where``);
the bounds are sanity limits far above any real model, so that a typo or a hostile file (``latent: 4e9``,
``num_hidden_layers: 1e7``) is refused before anything is allocated or built.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

from text2lora.errors import Text2LoraError

MAX_LAYERS = 1024
"""Decoder layers (the largest released models have under 200)."""
MAX_DIM = 2**20
"""A width: hidden, intermediate, head, embedding, trunk or LoRA rank (real models: under 2**17)."""
MAX_CONFIG_INT = 2**24
"""Any other size-like integer in a model config (vocabularies, positions, experts)."""
MAX_HYPERNET_PARAMS = 2_000_000_000
"""Parameters a hypernetwork may have (8 GB in fp32; the paper's largest, for a 7B model, has 55M)."""

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 3
_SHORT.maxlevel = 2


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to a few dozen characters, computed without expanding the whole value (a YAML alias
    bomb has billions of elements)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<an integer of {value.bit_length():,} bits>"  # repr() refuses ints over 4300 digits
    text = _SHORT.repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def int_in(value: Any, where: str, lo: int = 1, hi: int = MAX_DIM) -> int:
    """``value`` if it is an integer in ``[lo, hi]`` (not a bool, not a float), else an error naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Text2LoraError(f"{where} must be an integer, got {type(value).__name__} {short_repr(value)}")
    if not lo <= value <= hi:
        raise Text2LoraError(f"{where} must be between {lo} and {hi:,}, got {short_repr(value)}")
    return value


def finite(value: Any, where: str, *, positive: bool = False) -> float:
    """``value`` as a float if it is a finite number (and > 0 when ``positive``), else an error naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Text2LoraError(f"{where} must be a number, got {type(value).__name__} {short_repr(value)}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise Text2LoraError(f"{where} must be a finite number{' > 0' if positive else ''}, got {value}")
    return value
