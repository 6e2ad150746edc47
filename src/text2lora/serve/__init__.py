"""Serving: an OpenAI-compatible HTTP server whose adapters are generated from task descriptions (extra: serve)."""

from __future__ import annotations

from text2lora.serve.limits import ServeLimits

__all__ = ["ServeLimits", "create_app", "load_runtime"]


def __getattr__(name: str):
    if name == "create_app":
        from text2lora.serve.app import create_app

        return create_app
    if name == "load_runtime":
        from text2lora.serve.runtime import load_runtime

        return load_runtime
    raise AttributeError(name)
