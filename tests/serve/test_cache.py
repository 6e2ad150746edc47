"""The adapter cache: content-hash ids, LRU bounds by count and bytes, regeneration after eviction."""

from __future__ import annotations

import torch

from text2lora.serve.adapters import AdapterFactory
from text2lora.serve.cache import AdapterCache, adapter_id, is_adapter_id


def test_ids_are_content_hashes():
    a = adapter_id("ckpt-1", "Sort the words.")
    assert is_adapter_id(a) and a == adapter_id("ckpt-1", "  Sort   the words.\n")
    assert a != adapter_id("ckpt-2", "Sort the words.") and a != adapter_id("ckpt-1", "Sort the word.")


def test_lru_bounds_and_regeneration(tiny_parts):
    t2l = tiny_parts[0]
    cache = AdapterCache(max_adapters=2, max_bytes=10**9)
    factory = AdapterFactory(t2l, cache)
    try:
        first = factory.get_or_create("task one").result(timeout=30)
        factory.get_or_create("task two").result(timeout=30)
        factory.get_or_create("task one").result(timeout=30)  # a hit: "task one" becomes most recent
        factory.get_or_create("task three").result(timeout=30)
        assert [a.description for a in cache.snapshot()] == ["task three", "task one"]
        assert cache.nbytes == 2 * first.nbytes
        evicted = factory.id_for("task two")
        assert cache.get(evicted) is None
        again = factory.by_id(evicted).result(timeout=30)  # regenerated from the remembered description
        assert again.description == "task two" and len(cache) == 2
        assert factory.by_id("0" * 32) is None

        small = AdapterCache(max_adapters=100, max_bytes=int(first.nbytes * 1.5))
        factory2 = AdapterFactory(t2l, small)
        for d in ("a", "b", "c"):
            factory2.get_or_create(d).result(timeout=30)
        assert len(small) == 1 and small.nbytes <= first.nbytes * 1.5
        factory2.close()
    finally:
        factory.close()


def test_concurrent_descriptions_share_one_forward_pass(tiny_parts):
    t2l = tiny_parts[0]
    calls = []
    original = t2l.generate

    class Counting:
        def __getattr__(self, name):
            return getattr(t2l, name)

        def generate(self, descriptions):
            calls.append(list(descriptions))
            return original(descriptions)

    factory = AdapterFactory(Counting(), AdapterCache(100, 10**9))
    try:
        with factory._cond:  # hold the worker until all three are pending
            futures = [factory.get_or_create(d) for d in ("x", "y", "x")]
        results = [f.result(timeout=30) for f in futures]
        assert calls == [["x", "y"]]  # one forward pass, duplicates coalesced
        assert results[0] is results[2]
        direct = t2l.generate(["y"])
        torch.testing.assert_close(results[1].weights.factors["q_proj"][1], direct.factors["q_proj"][1])
    finally:
        factory.close()
