"""Every bound the server enforces on user input and on its own resources, in one typed config."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from text2lora.errors import Text2LoraError


@dataclass(frozen=True)
class ServeLimits:
    """Input-size and resource bounds; each violation is a 4xx JSON error, never a 500."""

    max_description_chars: int = 2000  #: task description length
    max_prompt_tokens: int = 1024  #: prompt length after the chat template
    max_tokens: int = 512  #: largest ``max_tokens`` a request may ask for
    default_max_tokens: int = 128  #: used when a request gives none
    max_body_bytes: int = 256 * 1024  #: HTTP request body
    body_timeout_s: float = 10.0  #: the whole body must arrive within this many seconds of the request (else 408)
    shutdown_grace_s: float = 5.0  #: on SIGTERM, requests still running after this long are answered 503
    max_concurrent: int = 64  #: requests being served at once (adapter creation and generation, streaming included)
    max_queue: int = 64  #: generation requests waiting for a slot in the decode batch
    max_batch: int = 16  #: sequences decoded together in one step
    max_messages: int = 64  #: chat messages per request
    max_prompts: int = 16  #: prompts in one /v1/completions request
    max_stop: int = 4  #: stop strings per request
    max_stop_chars: int = 64  #: length of one stop string
    cache_max_adapters: int = 1024  #: adapters kept in memory (LRU)
    cache_max_bytes: int = 512 * 2**20  #: bytes of adapter weights kept in memory (LRU)
    gather_ms: float = 5.0  #: an idle engine waits this long for more requests to prefill together

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0 or (value == 0 and f.name != "gather_ms"):
                raise Text2LoraError(f"serve limit {f.name} must be positive, got {value}")
        if self.default_max_tokens > self.max_tokens:
            raise Text2LoraError("default_max_tokens cannot exceed max_tokens")
