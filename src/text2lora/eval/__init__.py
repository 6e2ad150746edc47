"""Evaluation: metrics, scoring, methods, the score cache and reports.

    from text2lora.eval import EvalConfig, EvalSettings, evaluate, write_report

Names load lazily, so ``text2lora.eval.metrics`` stays importable without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EvalConfig": "text2lora.eval.config",
    "EvalSettings": "text2lora.eval.config",
    "EvalResult": "text2lora.eval.runner",
    "evaluate": "text2lora.eval.runner",
    "write_report": "text2lora.eval.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'text2lora.eval' has no attribute {name!r}")
