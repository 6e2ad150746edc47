"""Give freed heap memory back to the operating system, so the server's RSS stays flat once the adapter cache is full.

Generated adapters are a few MiB each, and glibc's malloc serves them from its arenas (its mmap threshold grows to
the size of the blocks freed), so adapters evicted from the cache leave holes that are reused only in part: without
trimming, RSS kept growing past the cache bound (``benchmarks/serve_load.py``, 128 MiB cache: 1,469 MiB at the
first fill, 1,687 after 4,000 adapters; with it 1,316 and 1,312).
``malloc_trim(0)`` returns the free pages of every arena; it is called after each hypernetwork batch that evicted
adapters (cheap beside the batch). A fixed low mmap threshold would do the same for adapters but page-fault every
decode step's KV-cache copies, hence trimming. Elsewhere than glibc this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        fn = None
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def release_free_memory() -> bool:
    """Return free heap pages to the OS (glibc ``malloc_trim``); False where that is not available."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True
