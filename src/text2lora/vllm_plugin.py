"""A vLLM plugin: vLLM's OpenAI server serves text2lora adapters by name, generated on demand.

With text2lora installed beside vLLM, vLLM finds :func:`register` through the ``vllm.general_plugins`` entry point
and registers :class:`T2LResolver` as a LoRA resolver (``vllm.lora.resolver``), which vLLM asks about a LoRA name
it does not know yet (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` turns resolvers on):

* ``t2l:<adapter id>``: an adapter already in the adapter store (``text2lora serve --adapter-store`` writes the same
  layout: one PEFT directory per id);
* ``t2l:desc:<description>``: generated now by the hypernetwork, written to the store under its id (the id
  ``text2lora serve`` gives the same description on the same checkpoint), then served by vLLM.

Settings (environment, read when vLLM loads the plugin): ``TEXT2LORA_VLLM_CHECKPOINT`` (hypernetwork checkpoint;
default: the shipped one), ``TEXT2LORA_VLLM_ADAPTERS`` (the store; default ``$TEXT2LORA_HOME/vllm-adapters``),
``TEXT2LORA_VLLM_DEVICE`` (where the hypernetwork runs; default cpu). This module imports without vLLM; vLLM is
imported inside :func:`register` only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "t2l:"
DESCRIPTION_PREFIX = "t2l:desc:"
RESOLVER_NAME = "text2lora"
ENV_CHECKPOINT, ENV_STORE, ENV_DEVICE = "TEXT2LORA_VLLM_CHECKPOINT", "TEXT2LORA_VLLM_ADAPTERS", "TEXT2LORA_VLLM_DEVICE"


class T2LResolver:
    """LoRA names -> PEFT adapter directories in ``store_dir``, generating described ones on first use.

    :meth:`resolve_path` is the logic (synchronous, no vLLM); :meth:`resolve_lora` is vLLM's async interface and
    returns ``make_request(lora_name, path)`` (a ``LoRARequest`` under vLLM) or None for names it does not serve.
    """

    def __init__(self, store_dir: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
                 device: str = "cpu", make_request: Callable[[str, Path], Any] | None = None,
                 load_t2l: Callable[[], Any] | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.make_request = make_request or (lambda name, path: path)
        self._load_t2l = load_t2l or (lambda: _load_t2l(checkpoint, device))
        self._t2l = None
        self._store = None
        self._fingerprint = ""
        self._fits: dict[str, bool] = {}
        self._lock = threading.Lock()  # one hypernetwork pass at a time; loading once

    @classmethod
    def from_env(cls, make_request: Callable[[str, Path], Any] | None = None) -> T2LResolver:
        from text2lora.paths import home

        return cls(os.environ.get(ENV_STORE) or home() / "vllm-adapters", checkpoint=os.environ.get(ENV_CHECKPOINT),
                   device=os.environ.get(ENV_DEVICE, "cpu"), make_request=make_request)

    async def resolve_lora(self, base_model_name: str, lora_name: str):
        """vLLM's ``LoRAResolver.resolve_lora``: the request for ``lora_name``, or None (vLLM then answers 404)."""
        path = await asyncio.to_thread(self.resolve_path, base_model_name, lora_name)
        return None if path is None else self.make_request(lora_name, path)

    def resolve_path(self, base_model_name: str, lora_name: str) -> Path | None:
        """The adapter directory for ``lora_name`` (generated first for ``t2l:desc:``), or None if not ours."""
        from text2lora.errors import Text2LoraError
        from text2lora.serve.cache import is_adapter_id

        if lora_name.startswith(DESCRIPTION_PREFIX):
            try:
                return self._generate(base_model_name, lora_name[len(DESCRIPTION_PREFIX):])
            except Text2LoraError as e:
                log.warning("text2lora cannot make %r: %s", lora_name[:200], e)
                return None
        if lora_name.startswith(PREFIX) and is_adapter_id(lora_name[len(PREFIX):]):
            path = self.store_dir / lora_name[len(PREFIX):]
            return path if (path / "adapter_config.json").is_file() else None
        return None

    def _generate(self, base_model_name: str, description: str) -> Path | None:
        from text2lora.errors import Text2LoraError
        from text2lora.serve.cache import Adapter, adapter_id, normalise_description

        description = normalise_description(description)
        if not description:
            raise Text2LoraError("the task description is empty")
        with self._lock:
            t2l, store = self._ready()
            if not self._fits_base(t2l, base_model_name):
                return None
            aid = adapter_id(self._fingerprint, description)
            path = self.store_dir / aid
            if not (path / "adapter_config.json").is_file():
                start = time.perf_counter()
                weights = t2l.generate([description])
                store.save(Adapter(aid, description, weights, (time.perf_counter() - start) * 1e3))
                log.info("text2lora generated adapter %s for vLLM", aid)
            return path

    def _ready(self):
        if self._t2l is None:
            from text2lora.serve.cache import AdapterStore, module_fingerprint

            t2l = self._load_t2l()
            self._fingerprint = module_fingerprint(t2l.hypernet, extra=repr(t2l.meta.to_dict()))  # as serve's ids
            self._store = AdapterStore(self.store_dir, t2l.layout, t2l.peft_base_name(), t2l.meta.base_model)
            self._t2l = t2l
        return self._t2l, self._store

    def _fits_base(self, t2l, base_model_name: str) -> bool:
        """Whether the checkpoint's adapters fit vLLM's model (checked once per name, from its config)."""
        from text2lora.errors import Text2LoraError

        if base_model_name not in self._fits:
            try:
                if base_model_name != t2l.peft_base_name():
                    t2l.check_base_model(base_model_name)
                self._fits[base_model_name] = True
            except Text2LoraError as e:
                log.warning("text2lora's checkpoint does not fit vLLM's model %s: %s", base_model_name, e)
                self._fits[base_model_name] = False
        return self._fits[base_model_name]


def _load_t2l(checkpoint, device: str):
    from text2lora.api import T2L

    return T2L.load(checkpoint, device=device)


def _lora_int_id(path: Path) -> int:
    """A positive id for vLLM's LoRARequest from the adapter id (vLLM's server replaces it with its own counter)."""
    return int(path.name[:8], 16) + 1


def register() -> None:
    """The ``vllm.general_plugins`` entry point: register :class:`T2LResolver` with vLLM's resolver registry.

    Inside vLLM the plugin logs as ``vllm.text2lora``, through vLLM's own handlers: a description the resolver
    declines is then explained in vLLM's log (vLLM itself only answers 404 "does not exist")."""
    global log
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver, LoRAResolverRegistry

    def make_request(name: str, path: Path):
        return LoRARequest(lora_name=name, lora_int_id=_lora_int_id(path), lora_path=str(path))

    log = logging.getLogger("vllm.text2lora")
    inner = T2LResolver.from_env(make_request)

    class Text2LoraResolver(LoRAResolver):
        async def resolve_lora(self, base_model_name: str, lora_name: str):
            return await inner.resolve_lora(base_model_name, lora_name)

    LoRAResolverRegistry.register_resolver(RESOLVER_NAME, Text2LoraResolver())
