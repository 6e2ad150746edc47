"""The decode engine: continuous batching with one LoRA adapter per sequence, all in memory.

A background thread owns the model. Between decode steps it admits waiting requests (up to ``max_batch`` sequences
in flight): their prompts are prefilled together (left-padded, each with its own adapter), then their KV cache is
left-padded to the running batch's length and concatenated along the batch. Every step feeds one token per sequence
through the model under a single :func:`apply_lora` whose adapter i belongs to sequence i (base-model sequences get
an all-zero adapter; a batch with no adapter at all runs without hooks). Finished sequences leave the batch at once
and fully padded cache columns are trimmed, so a long request never holds short ones back.

Requests stream :class:`Event` objects to a sink callable (called on the engine thread).

One request's failure is its own: adapters and prompts are checked in :meth:`DecodeEngine.submit`; a prefill that
raises is retried one request at a time; an exception while sampling or emitting one row, or a row whose logits
are NaN, fails that row alone. Only a decode step's model call failing (a bug, not input) fails the batch. At
:meth:`DecodeEngine.close` every request still running or waiting gets an ``error`` event carrying
:class:`~text2lora.errors.Unavailable`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from text2lora.errors import Busy, Text2LoraError, Unavailable
from text2lora.lora import LoraWeights, apply_lora

log = logging.getLogger(__name__)


class QueueFull(Busy):
    """Too many requests are waiting for a slot in the decode batch (HTTP 429)."""

    code = "queue_full"


MIN_TEMPERATURE = 1e-2
"""Temperatures below this decode greedily, the limit they approach: dividing logits by 1e-300 would overflow the
softmax into inf/nan."""


NAN_LOGITS = "internal error: the model's output for this request is not a number (is its adapter broken?)"


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  #: below MIN_TEMPERATURE (0 included) means greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False  #: keep going past end-of-sequence tokens (benchmarks)


@dataclass
class Event:
    """``delta`` (new text), ``done`` (finish_reason and token counts) or ``error`` (message; ``error`` is the
    :class:`Text2LoraError` to answer with, or None for an internal failure)."""

    kind: str
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: Text2LoraError | None = None


@dataclass(eq=False)
class GenRequest:
    prompt_ids: list[int]
    adapter: LoraWeights | None  #: one adapter (n == 1) or None for the base model
    params: SamplingParams
    sink: Callable[[Event], None]
    cancelled: bool = False
    arrived: float = field(default_factory=time.perf_counter)

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(eq=False)
class _Row:
    req: GenRequest
    ids: list[int] = field(default_factory=list)
    sent: int = 0  #: characters of decoded text already emitted
    generator: torch.Generator | None = None
    failed: str | None = None  #: why this row alone failed (it leaves the batch at the next emit)


class DecodeEngine:
    """Continuous-batching decoder over a frozen causal LM; thread-safe ``submit``."""

    def __init__(self, model, tokenizer, *, max_batch: int = 16, max_queue: int = 64, gather_ms: float = 5.0) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_queue, self.gather_s = max_batch, max_queue, gather_ms / 1e3
        eos = model.generation_config.eos_token_id if getattr(model, "generation_config", None) else None
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos_ids = (set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}) - {None}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.device = next(model.parameters()).device
        self.vocab_size = model.get_input_embeddings().num_embeddings
        self._queue: deque[GenRequest] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._zero: LoraWeights | None = None  #: the all-zero adapter base-model rows get in a mixed batch
        self._kind: tuple | None = None  #: (rank, scale, targets, layout) of the first adapter: every later one matches
        self._reset()
        self.steps = 0  #: decode steps run (for tests and stats)
        self.max_rows_seen = 0

    # ----------------------------------------------------------------- public
    @property
    def active(self) -> int:
        return len(self._rows)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, req: GenRequest) -> None:
        with self._cond:
            if self._closed:
                raise Unavailable("the server is shutting down")
            self._check(req)
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are already waiting; try again shortly")
            self._queue.append(req)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="t2l-decode", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _check(self, req: GenRequest) -> None:
        """Refuse, at submission, what would fail the batch it joins (called under the lock)."""
        if not req.prompt_ids:
            raise Text2LoraError("the prompt is empty")
        if min(req.prompt_ids) < 0 or max(req.prompt_ids) >= self.vocab_size:
            raise Text2LoraError(f"prompt token ids must be in [0, {self.vocab_size})")
        a = req.adapter
        if a is None:
            return
        if a.n != 1:
            raise Text2LoraError(f"a request takes one adapter, got {a.n}")
        kind = (a.rank, a.scale, frozenset(a.factors), a.layout)
        if self._kind is None:
            self._kind = kind
        elif kind[:3] != self._kind[:3] or not a.layout.compatible_with(self._kind[3]):
            raise Text2LoraError("the adapter's layout, rank or scale differs from the adapters this engine serves")

    def generate(self, prompt_ids: list[int], adapter: LoraWeights | None, params: SamplingParams) -> tuple[str, Event]:
        """Blocking convenience: the full text and the ``done`` event."""
        import queue

        events: queue.Queue[Event] = queue.Queue()
        self.submit(GenRequest(prompt_ids, adapter, params, events.put))
        parts = []
        while True:
            ev = events.get()
            if ev.kind == "delta":
                parts.append(ev.text)
            elif ev.kind == "error":
                raise ev.error if ev.error is not None else RuntimeError(ev.text)
            else:
                return "".join(parts), ev

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # ------------------------------------------------------------ the loop
    def _reset(self) -> None:
        self._rows: list[_Row] = []
        self._kv: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer (B, H, T, D)
        self._mask = torch.zeros(0, 0, dtype=torch.long, device=self.device)  # (B, T)
        self._next = torch.zeros(0, dtype=torch.long, device=self.device)  # (B,) tokens to feed next
        self._lora: LoraWeights | None = None

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                new = self._take()
                if new is None:
                    self._shut_down()
                    return
                try:
                    if new:
                        self._admit_each(new)
                    if self._rows:
                        self._step()
                except Exception as e:  # noqa: BLE001 - a step's model call failed (a bug, not input): fail the batch
                    log.exception("decode step failed")
                    joined = {row.req for row in self._rows}
                    stranded = [_Row(r) for r in new if r not in joined]
                    self._fail(self._rows + stranded, f"internal error: {type(e).__name__}")
                    self._reset()

    def _shut_down(self) -> None:
        """Every request still decoding or waiting gets :class:`Unavailable` (HTTP 503)."""
        with self._cond:
            waiting = [_Row(r) for r in self._queue]
            self._queue.clear()
        self._fail(self._rows + waiting, "the server is shutting down", Unavailable("the server is shutting down"))
        self._reset()

    def _admit_each(self, reqs: list[GenRequest]) -> None:
        """Prefill ``reqs`` together; if that raises, one at a time, so a request that fails fails alone; then
        join the prefilled rows to the running batch."""
        try:
            prefilled = [self._prefill(reqs)]
        except Exception:  # noqa: BLE001 - isolated below
            prefilled = []
            for req in reqs:
                try:
                    prefilled.append(self._prefill([req]))
                except Exception as one:  # noqa: BLE001 - this request alone
                    log.error("prefill failed", exc_info=one)
                    self._fail([_Row(req)], f"internal error: {type(one).__name__}")
        for part in prefilled:
            self._join(*part)

    def _take(self) -> list[GenRequest] | None:
        with self._cond:
            if not self._rows:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return None
                deadline = time.perf_counter() + self.gather_s
                while len(self._queue) < self.max_batch and not self._closed:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            if self._closed:
                return None
            taken = []
            while self._queue and len(self._rows) + len(taken) < self.max_batch:
                req = self._queue.popleft()
                if not req.cancelled:
                    taken.append(req)
            return taken

    def _prefill(self, reqs: list[GenRequest]) -> tuple:
        """The model call and first tokens for ``reqs``, changing no state: (rows, kv, mask, first tokens)."""
        rows = [_Row(r, generator=_generator(r.params)) for r in reqs]
        width = max(len(r.prompt_ids) for r in reqs)
        ids = torch.full((len(reqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(reqs), width, dtype=torch.long)
        for i, r in enumerate(reqs):
            ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids, dtype=torch.long)
            mask[i, width - len(r.prompt_ids) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        lora = self._cat_adapters([r.adapter for r in reqs])
        logits, kv = self._forward(ids, mask, positions, [], lora)
        return rows, kv, mask, self._sample(logits, rows)

    def _join(self, rows: list[_Row], kv, mask: torch.Tensor, first: torch.Tensor) -> None:
        """Add prefilled rows to the running batch and emit their first tokens."""
        running = self._cat_adapters([row.req.adapter for row in self._rows + rows])
        self._merge(rows, kv, mask)
        self._next = torch.cat([self._next, first])
        self._lora = running
        self._emit(len(self._rows) - len(rows), first.tolist())

    def _step(self) -> None:
        batch = len(self._rows)
        self._mask = torch.cat([self._mask, torch.ones(batch, 1, dtype=torch.long, device=self.device)], dim=1)
        positions = self._mask.sum(-1, keepdim=True) - 1  # (B, 1)
        logits, self._kv = self._forward(self._next[:, None], self._mask, positions, self._kv, self._lora)
        self._next = self._sample(logits, self._rows)
        self.steps += 1
        self._emit(0, self._next.tolist())

    def _forward(self, ids, mask, positions, kv, lora):
        """One model call; returns last-position logits (B, V) and the per-layer KV tensors."""
        cache = _cache_from(kv)
        ctx = apply_lora(self.model, lora) if lora is not None else contextlib.nullcontext()
        with ctx:
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                             use_cache=True, logits_to_keep=1)
        layers = out.past_key_values.layers
        return out.logits[:, -1, :].float(), [(layer.keys, layer.values) for layer in layers]

    def _merge(self, rows: list[_Row], kv: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor) -> None:
        """Left-pad the running batch and the new rows to one length and stack them."""
        if not self._rows:
            self._rows, self._kv, self._mask = rows, kv, mask
            self.max_rows_seen = max(self.max_rows_seen, len(rows))
            return
        width = max(self._mask.shape[1], mask.shape[1])
        old_pad, new_pad = width - self._mask.shape[1], width - mask.shape[1]
        self._kv = [
            (torch.cat([F.pad(k0, (0, 0, old_pad, 0)), F.pad(k1, (0, 0, new_pad, 0))]),
             torch.cat([F.pad(v0, (0, 0, old_pad, 0)), F.pad(v1, (0, 0, new_pad, 0))]))
            for (k0, v0), (k1, v1) in zip(self._kv, kv)
        ]
        self._mask = torch.cat([F.pad(self._mask, (old_pad, 0)), F.pad(mask, (new_pad, 0))])
        self._rows = self._rows + rows
        self.max_rows_seen = max(self.max_rows_seen, len(self._rows))

    def _cat_adapters(self, adapters: list[LoraWeights | None]) -> LoraWeights | None:
        real = [a for a in adapters if a is not None]
        if not real:
            return None
        if self._zero is None or not self._zero.layout.compatible_with(real[0].layout):
            self._zero = replace(real[0], factors={k: (torch.zeros_like(a), torch.zeros_like(b))
                                                   for k, (a, b) in real[0].factors.items()})
        cat = LoraWeights.cat([a if a is not None else self._zero for a in adapters]).to(self.device)
        # layer-major storage: apply_lora slices [:, layer], which is then one contiguous (B, r, d) block per hook
        return replace(cat, factors={k: (_layer_major(a), _layer_major(b)) for k, (a, b) in cat.factors.items()})

    def _sample(self, logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        """Next token per row (see :meth:`_sample_row`); a row whose logits hold NaN, or whose sampling raises,
        is marked failed (greedy token as a placeholder) and leaves at the next emit. logits (B, V)."""
        tokens = logits.argmax(-1)  # (B,)
        nan = torch.isnan(logits).any(-1).tolist()  # (B,)
        for i, row in enumerate(rows):
            if nan[i]:
                row.failed = NAN_LOGITS
                continue
            try:
                token = self._sample_row(logits[i], row)
            except Exception as e:  # noqa: BLE001 - this row alone
                log.exception("sampling failed")
                row.failed = f"internal error: {type(e).__name__}"
                continue
            if token is not None:
                tokens[i] = token
        return tokens

    def _sample_row(self, logits: torch.Tensor, row: _Row) -> int | None:
        """One row's token, or None for greedy: greedy where temperature is below :data:`MIN_TEMPERATURE` (what it
        tends to), else temperature / top-p sampling; a distribution that is not finite decodes greedily. (V,)"""
        p = row.req.params
        if p.temperature < MIN_TEMPERATURE:
            return None
        probs = torch.softmax(logits.float() / p.temperature, dim=-1)  # (V,)
        if p.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > p.top_p  # keep the smallest prefix reaching top_p
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p.masked_fill(drop, 0.0))
        if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0:
            return None
        return int(torch.multinomial(probs, 1, generator=row.generator)[0])

    def _emit(self, offset: int, tokens: list[int]) -> None:
        """Append each row's new token, send text deltas, retire finished and cancelled rows."""
        keep = []
        for i, row in enumerate(self._rows):
            if i < offset:
                keep.append(i)
                continue
            if row.failed is not None:
                self._fail([row], row.failed)
                continue
            try:
                done = row.req.cancelled or self._advance(row, tokens[i - offset])
            except Exception as e:  # noqa: BLE001 - this row alone (detokenising, stop strings)
                log.exception("emitting a token failed")
                self._fail([row], f"internal error: {type(e).__name__}")
                continue
            if not done:
                keep.append(i)
        if len(keep) < len(self._rows):
            self._select(keep)

    def _advance(self, row: _Row, token: int) -> bool:
        p = row.req.params
        finish = None
        if token in self.eos_ids and not p.ignore_eos:
            finish = "stop"
        else:
            row.ids.append(token)
        text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
        if p.stop:
            hits = [i for i in (text.find(s, max(0, row.sent - len(s))) for s in p.stop) if i >= 0]
            if hits:
                text, finish = text[: min(hits)], "stop"
        if finish is None and len(row.ids) >= p.max_tokens:
            finish = "length"
        if finish is None:
            safe = len(text) - (max(map(len, p.stop)) - 1 if p.stop else 0)
            while safe > row.sent and text[safe - 1] == "\ufffd":  # an incomplete multi-byte character
                safe -= 1
            if safe > row.sent:
                self._send(row, Event("delta", text[row.sent : safe]))
                row.sent = safe
            return False
        if len(text) > row.sent:
            self._send(row, Event("delta", text[row.sent :]))
        self._send(row, Event("done", finish_reason=finish, prompt_tokens=len(row.req.prompt_ids),
                              completion_tokens=len(row.ids)))
        return True

    def _send(self, row: _Row, event: Event) -> None:
        try:
            row.req.sink(event)
        except Exception:  # noqa: BLE001 - the consumer is gone (client disconnected)
            row.req.cancel()

    def _select(self, keep: list[int]) -> None:
        """Keep only rows ``keep``; drop cache columns that are padding for every remaining row."""
        if not keep:
            self._reset()
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self._rows = [self._rows[i] for i in keep]
        mask = self._mask[index]
        start = int(mask.any(0).long().argmax())  # first column some row still uses
        self._mask = mask[:, start:]
        self._kv = [(k[index, :, start:], v[index, :, start:]) for k, v in self._kv]
        self._next = self._next[index]
        self._lora = self._lora.select(index) if self._lora is not None else None
        if self._lora is not None and all(r.req.adapter is None for r in self._rows):
            self._lora = None

    def _fail(self, rows: list[_Row], message: str, error: Text2LoraError | None = None) -> None:
        for row in rows:
            self._send(row, Event("error", message, error=error))


def _generator(params: SamplingParams) -> torch.Generator | None:
    if params.temperature < MIN_TEMPERATURE:
        return None
    g = torch.Generator()
    g.manual_seed(params.seed if params.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    return g


def _layer_major(t: torch.Tensor) -> torch.Tensor:
    """The same (N, L, ...) values stored as (L, N, ...), viewed back as (N, L, ...)."""
    return t.transpose(0, 1).contiguous().transpose(0, 1)


def _cache_from(kv: list[tuple[torch.Tensor, torch.Tensor]]):
    """A ``DynamicCache`` holding ``kv`` without copying it (the constructor's ``ddp_cache_data`` copies)."""
    from transformers import DynamicCache

    if not kv:
        return DynamicCache()
    cache = DynamicCache(ddp_cache_data=[(None, None)] * len(kv))
    for layer, (k, v) in zip(cache.layers, kv):
        layer.dtype, layer.device = k.dtype, k.device
        layer.keys, layer.values = k, v
        layer.is_initialized = True
    return cache
