"""What a server instance holds: the hypernetwork, the base model, the decode engine and the adapter cache."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from text2lora.api import T2L
from text2lora.serve.adapters import AdapterFactory
from text2lora.serve.cache import AdapterCache, AdapterStore
from text2lora.serve.engine import DecodeEngine
from text2lora.serve.limits import ServeLimits

log = logging.getLogger(__name__)


@dataclass
class ServeRuntime:
    t2l: T2L
    model: object
    tokenizer: object
    decoder: DecodeEngine
    adapters: AdapterFactory
    cache: AdapterCache

    @property
    def base_model(self) -> str:
        return self.t2l.meta.base_model

    @property
    def max_positions(self) -> int | None:
        config = self.model.config.get_text_config()
        return getattr(config, "max_position_embeddings", None)

    def close(self) -> None:
        self.adapters.close()
        self.decoder.close()


def load_runtime(
    checkpoint: str | os.PathLike | None = None,
    limits: ServeLimits | None = None,
    *,
    store_dir: str | os.PathLike | None = None,
    device: str | None = None,
) -> ServeRuntime:
    """Load a checkpoint and its base model and wire up the engine and cache (nothing starts until used);
    ``device`` defaults to :func:`~text2lora.models.base.default_device`."""
    from text2lora.models.base import default_device, load_base_model

    limits = limits or ServeLimits()
    device = device or default_device()
    t2l = T2L.load(checkpoint, device=device)
    if not t2l.meta.trained:
        log.warning("serving an untrained (freshly initialised) hypernetwork: its adapters do not change the model")
    model, tokenizer = load_base_model(t2l.meta.base_model, device=device)
    t2l.generate(["warm-up"])  # the encoder's first call is slow; keep it out of the first request's generation_ms
    return build_runtime(t2l, model, tokenizer, limits, store_dir=store_dir)


def build_runtime(t2l: T2L, model, tokenizer, limits: ServeLimits, *, store_dir=None) -> ServeRuntime:
    store = (AdapterStore(Path(store_dir), t2l.layout, t2l.peft_base_name(), t2l.meta.base_model)
             if store_dir is not None else None)
    cache = AdapterCache(limits.cache_max_adapters, limits.cache_max_bytes, store)
    decoder = DecodeEngine(model, tokenizer, max_batch=limits.max_batch, max_queue=limits.max_queue,
                           gather_ms=limits.gather_ms)
    return ServeRuntime(t2l, model, tokenizer, decoder, AdapterFactory(t2l, cache), cache)
