"""text2lora: a plain-English task description in, a LoRA adapter out (Text-to-LoRA, arXiv 2506.06105).

The public API is re-exported here lazily so that ``import text2lora`` stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "Text2LoraError": "text2lora.errors",
    "HyperNetConfig": "text2lora.config",
    "HyperNetwork": "text2lora.hypernet",
    "build_hypernetwork": "text2lora.hypernet",
    "LoraWeights": "text2lora.lora",
    "apply_lora": "text2lora.lora",
    "save_peft_adapter": "text2lora.lora",
    "load_peft_adapter": "text2lora.lora",
    "discover_targets": "text2lora.models.targets",
    "TargetLayout": "text2lora.models.targets",
    "T2L": "text2lora.api",
    "init_checkpoint": "text2lora.api",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'text2lora' has no attribute {name!r}")
