"""Adapter creation for the server: descriptions that arrive together go through the hypernetwork together.

A worker thread takes every pending description (deduplicated by id), runs one ``T2L.generate`` over all of them,
splits the result into one-adapter :class:`Adapter` objects and puts them in the cache. Callers get a
``concurrent.futures.Future`` (await it with ``asyncio.wrap_future``). A batch whose forward pass raises is retried
one description at a time, so one bad description fails only its own requests; at :meth:`AdapterFactory.close`
every waiting request gets :class:`~text2lora.errors.Unavailable`.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future

from text2lora.api import T2L
from text2lora.errors import Text2LoraError, Unavailable
from text2lora.serve.cache import Adapter, AdapterCache, adapter_id, module_fingerprint, normalise_description
from text2lora.serve.memory import release_free_memory

log = logging.getLogger(__name__)


class AdapterFactory:
    """Get-or-create adapters by description, batching concurrent creations into one forward pass."""

    def __init__(self, t2l: T2L, cache: AdapterCache, max_batch: int = 64) -> None:
        self.t2l, self.cache, self.max_batch = t2l, cache, max_batch
        self.fingerprint = module_fingerprint(t2l.hypernet, extra=repr(t2l.meta.to_dict()))
        self._pending: dict[str, tuple[str, list[Future]]] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._trimmed_at = 0  #: the cache's eviction count when freed memory was last given back

    def id_for(self, description: str, examples=()) -> str:
        return adapter_id(self.fingerprint, description, examples)

    def get_or_create(self, description: str, examples=()) -> Future:
        """A future of the :class:`Adapter` for ``description`` and its checked worked examples (already done when
        it is cached)."""
        description = normalise_description(description)
        if not description:
            raise Text2LoraError("the task description is empty")
        examples = tuple(examples)
        self.t2l.require_examples(len(examples))
        aid = self.id_for(description, examples)
        future: Future = Future()
        cached = self.cache.get(aid)
        if cached is not None:
            future.set_result(cached)
            return future
        with self._cond:
            if self._closed:
                raise Unavailable("the server is shutting down")
            self._pending.setdefault(aid, (description, examples, []))[2].append(future)
            self._start_locked()
            self._cond.notify()
        return future

    def by_id(self, aid: str) -> Future | None:
        """The adapter for an id: cached, or regenerated from a remembered description; None if unknown."""
        cached = self.cache.get(aid)
        if cached is not None:
            future: Future = Future()
            future.set_result(cached)
            return future
        known = self.cache.description(aid)
        return None if known is None else self.get_or_create(*known)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            pending, self._pending = self._pending, {}
            self._cond.notify_all()
        for *_, futures in pending.values():
            for f in futures:
                _settle(f, error=Unavailable("the server is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _start_locked(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="t2l-adapters", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed and not self._pending:
                    return
                batch = dict(list(self._pending.items())[: self.max_batch])
                for aid in batch:
                    del self._pending[aid]
            self._generate(batch)

    def _generate(self, batch: dict[str, tuple[str, tuple, list[Future]]]) -> None:
        """One forward pass for the batch; if it raises, one per description, so a failure stays with its own."""
        try:
            self._generate_together(batch)
        except Exception as e:  # noqa: BLE001 - handed to the waiting requests
            if len(batch) == 1:
                self._fail(batch, e)
                return
            for aid, entry in batch.items():
                try:
                    self._generate_together({aid: entry})
                except Exception as one:  # noqa: BLE001 - this description's requests only
                    self._fail({aid: entry}, one)

    def _generate_together(self, batch: dict[str, tuple[str, tuple, list[Future]]]) -> None:
        ids = list(batch)
        start = time.perf_counter()
        rows = [list(batch[i][1]) for i in ids]
        descriptions = [batch[i][0] for i in ids]
        weights = self.t2l.generate(descriptions, examples=rows) if any(rows) else self.t2l.generate(descriptions)
        ms = (time.perf_counter() - start) * 1e3
        items = [Adapter(aid, batch[aid][0], _own(weights.select(k)), ms, examples=batch[aid][1])
                 for k, aid in enumerate(ids)]
        del weights  # the batch's storage, before the cache takes the copies
        for item in items:
            try:
                self.cache.put(item)
            except (OSError, Text2LoraError):
                log.exception("could not store adapter %s on disk; it is kept in memory only", item.id)
            for f in batch[item.id][2]:
                _settle(f, result=item)
        if self.cache.evictions != self._trimmed_at:  # evicted adapters' memory goes back to the OS
            self._trimmed_at = self.cache.evictions
            release_free_memory()

    @staticmethod
    def _fail(batch: dict[str, tuple[str, tuple, list[Future]]], error: Exception) -> None:
        if not isinstance(error, Text2LoraError):
            log.error("adapter generation failed", exc_info=error)
        for *_, futures in batch.values():
            for f in futures:
                _settle(f, error=error)


def _settle(future: Future, *, result=None, error: BaseException | None = None) -> None:
    """Resolve a future unless its waiter already cancelled it (a request cut by shutdown or a disconnect)."""
    if not future.set_running_or_notify_cancel():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _own(weights):
    """A copy whose tensors do not keep the whole batch's storage alive (so the cache's byte count is true)."""
    from dataclasses import replace

    return replace(weights, factors={k: (a.clone(), b.clone()) for k, (a, b) in weights.factors.items()})
