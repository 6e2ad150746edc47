"""Load a causal LM and its tokenizer from a Hugging Face id, a local folder or a bundled name."""

from __future__ import annotations

import logging

import torch

from text2lora.errors import Text2LoraError
from text2lora.models.bundled import resolve_model

log = logging.getLogger(__name__)


def load_tokenizer(name_or_path: str):
    """The tokenizer of a base model, set up for batched decoding (left padding, a pad token)."""
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise Text2LoraError(f"cannot load tokenizer {name_or_path!r}: {_first_line(e)}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_base_model(
    name_or_path: str,
    *,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device = "cpu",
):
    """Load a frozen causal LM in eval mode: ``(model, tokenizer)``."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(name_or_path)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as e:
        raise Text2LoraError(f"cannot load base model {name_or_path!r}: {_first_line(e)}") from None
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model, load_tokenizer(name_or_path)


def default_device() -> str:
    """Where models run unless told otherwise: the first GPU when there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def compile_decoder_layers(model) -> int:
    """Compile each decoder layer of ``model`` in place (``torch.compile``, dynamic shapes) and return how many.

    In place, so module paths stay as they are and adapters applied by forward hooks
    (:func:`text2lora.lora.apply_lora`) still find their modules; the first forward pass of each new shape is
    slow (compilation), later ones faster. A model without ``*DecoderLayer`` modules is a user error."""
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    if not layers:
        raise Text2LoraError(f"loop.compile: {type(model).__name__} has no decoder layers to compile")
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)
