"""Adapters by content hash: an in-memory LRU bounded by count and bytes, with an optional disk store.

An adapter's id is the sha256 of (checkpoint fingerprint, normalised description), so the same description on the
same hypernetwork always gets the same id, and a different checkpoint never serves a stale adapter. Adapters are
used from memory; the disk store only lets them survive eviction and restarts.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from text2lora.lora import LoraWeights, adapter_provenance
from text2lora.models.targets import TargetLayout

ID_CHARS = 32  #: hex characters of the sha256 kept in an id (128 bits)


def normalise_description(text: str) -> str:
    return " ".join(text.split())


def adapter_id(checkpoint_fingerprint: str, description: str, examples=()) -> str:
    """The id of the adapter a checkpoint makes from a description (and worked examples: they join the hash only
    when given, so description-only ids are what they always were)."""
    key = f"{checkpoint_fingerprint}\n{normalise_description(description)}"
    if examples:
        key += "\n" + json.dumps([[e.input, e.output] for e in examples], ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()[:ID_CHARS]


def is_adapter_id(text: str) -> bool:
    return len(text) == ID_CHARS and all(c in "0123456789abcdef" for c in text)


def module_fingerprint(module: torch.nn.Module, extra: str = "") -> str:
    """A sha256 over a module's parameters and buffers (names, shapes, bytes) and ``extra``."""
    h = hashlib.sha256(extra.encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class Adapter:
    """One generated adapter (``weights.n == 1``) and what the API reports about it."""

    id: str
    description: str
    weights: LoraWeights
    generation_ms: float
    created: int = field(default_factory=lambda: int(time.time()))
    examples: tuple = ()  #: the worked examples it was generated from (empty when loaded back from the store)
    n_examples: int = 0  #: how many there were (kept when the store reloads it)

    def __post_init__(self) -> None:
        self.examples = tuple(self.examples)
        self.n_examples = self.n_examples or len(self.examples)

    @property
    def nbytes(self) -> int:
        return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in self.weights.factors.values())

    @property
    def targets(self) -> list[str]:
        return sorted(self.weights.factors)


class AdapterCache:
    """Thread-safe LRU of :class:`Adapter` by id; also remembers recent descriptions by id so an evicted
    adapter named as ``t2l:<id>`` can be regenerated."""

    def __init__(self, max_adapters: int, max_bytes: int, store: AdapterStore | None = None) -> None:
        self.max_adapters, self.max_bytes, self.store = max_adapters, max_bytes, store
        self._items: OrderedDict[str, Adapter] = OrderedDict()
        self._descriptions: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0
        self.evictions = 0  #: adapters evicted so far (the factory gives their memory back after a batch)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def snapshot(self) -> list[Adapter]:
        """The adapters in memory, most recently used first (without touching their recency)."""
        with self._lock:
            return list(reversed(self._items.values()))

    def get(self, adapter_id: str) -> Adapter | None:
        with self._lock:
            item = self._items.get(adapter_id)
            if item is not None:
                self._items.move_to_end(adapter_id)
                return item
        if self.store is not None:
            item = self.store.load(adapter_id)
            if item is not None:
                self._insert(item)
        return item

    def description(self, adapter_id: str) -> tuple[str, tuple] | None:
        """(description, examples) of a recently seen adapter, to regenerate it after eviction."""
        with self._lock:
            return self._descriptions.get(adapter_id)

    def put(self, item: Adapter) -> None:
        self._insert(item)
        if self.store is not None:
            self.store.save(item)

    def _insert(self, item: Adapter) -> None:
        with self._lock:
            old = self._items.pop(item.id, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[item.id] = item
            self._bytes += item.nbytes
            if item.examples or item.n_examples == 0:  # a reloaded adapter with examples cannot be regenerated
                self._descriptions[item.id] = (item.description, item.examples)
            if item.id in self._descriptions:
                self._descriptions.move_to_end(item.id)
            while len(self._descriptions) > 8 * self.max_adapters:
                self._descriptions.popitem(last=False)
            while len(self._items) > 1 and (len(self._items) > self.max_adapters or self._bytes > self.max_bytes):
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes
                self.evictions += 1


class AdapterStore:
    """A directory of adapters, one PEFT adapter directory ``<id>/`` each (the same files ``text2lora generate``
    writes, :func:`text2lora.lora.save_peft_adapter`), with the server's fields in its ``text2lora.json``."""

    def __init__(self, root: str | Path, layout: TargetLayout, base_model_name_or_path: str = "",
                 base_model: str = "") -> None:
        self.root, self.layout = Path(root), layout
        self.base_model_name_or_path, self.base_model = base_model_name_or_path, base_model
        self.root.mkdir(parents=True, exist_ok=True)

    def save(self, item: Adapter) -> None:
        from text2lora.lora import PROVENANCE, save_peft_adapter

        target = self.root / item.id
        if (target / PROVENANCE).is_file():
            return
        meta = {**adapter_provenance(item.description, self.base_model, item.examples), "text2lora_adapter_id": item.id,
                "text2lora_generation_ms": item.generation_ms, "text2lora_created": item.created}
        save_peft_adapter(item.weights, target, base_model_name_or_path=self.base_model_name_or_path, metadata=meta)

    def load(self, adapter_id: str) -> Adapter | None:
        from text2lora.lora import PROVENANCE, load_peft_adapter, read_provenance

        if not is_adapter_id(adapter_id) or not (self.root / adapter_id / PROVENANCE).is_file():
            return None
        meta = read_provenance(self.root / adapter_id)
        weights = load_peft_adapter(self.root / adapter_id, self.layout)
        count = re.match(r"(\d+) examples", str(meta.get("text2lora_examples", "")))
        return Adapter(adapter_id, meta["text2lora_description"], weights, float(meta["text2lora_generation_ms"]),
                       int(meta["text2lora_created"]), n_examples=int(count.group(1)) if count else 0)

