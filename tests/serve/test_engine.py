"""The decode engine: per-sample adapters in one batch give exactly what each request gets alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from text2lora.generation import chat_prompt, generate_texts
from text2lora.serve.engine import DecodeEngine, GenRequest, QueueFull, SamplingParams

DESCS = ["Translate English to French.", "Answer maths questions.", "Classify the sentiment of a review."]
INPUTS = ["hello there", "what is 2+2? please answer in words", "good movie"]


@pytest.fixture()
def engine(tiny_parts):
    _, model, tok = tiny_parts
    eng = DecodeEngine(model, tok, max_batch=8, gather_ms=30)
    yield eng
    eng.close()


def _ids(tok, text):
    return tok(chat_prompt(tok, text), add_special_tokens=False)["input_ids"]


def test_mixed_batch_matches_hf_generate(engine, tiny_parts):
    t2l, model, tok = tiny_parts
    lora = t2l.generate(DESCS)
    prompts = [chat_prompt(tok, x) for x in INPUTS]
    reference = [generate_texts(model, tok, [p], lora=lora.select(i), max_new_tokens=10)[0] for i, p in enumerate(prompts)]
    reference += generate_texts(model, tok, prompts, max_new_tokens=10)
    params = SamplingParams(max_tokens=10, temperature=0)
    jobs = [(_ids(tok, x), lora.select(i)) for i, x in enumerate(INPUTS)] + [(_ids(tok, x), None) for x in INPUTS]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda j: engine.generate(j[0], j[1], params), jobs))
    assert [text.strip() for text, _ in results] == reference
    assert engine.max_rows_seen == 6  # all six were decoded together
    assert len(set(reference[:3])) == 3 and reference[0] != reference[3]  # the adapters matter


def test_late_request_joins_running_batch(engine, tiny_parts):
    t2l, model, tok = tiny_parts
    lora = t2l.generate(DESCS[:2])
    long = SamplingParams(max_tokens=60, temperature=0, ignore_eos=True)
    short = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    solo_a, _ = engine.generate(_ids(tok, INPUTS[0]), lora.select(0), long)
    solo_b, _ = engine.generate(_ids(tok, INPUTS[1]), lora.select(1), short)
    engine.max_rows_seen = 0
    out = {}
    started = threading.Event()

    def run_a():
        out["a"] = engine.generate(_ids(tok, INPUTS[0]), lora.select(0), long)[0]

    thread = threading.Thread(target=run_a)
    thread.start()
    while engine.steps == 0 or engine.active == 0:
        time.sleep(0.001)
    steps_before = engine.steps
    started.set()
    out["b"] = engine.generate(_ids(tok, INPUTS[1]), lora.select(1), short)[0]
    thread.join()
    assert engine.max_rows_seen == 2 and steps_before > 0  # b joined a batch already decoding a
    assert out["a"] == solo_a and out["b"] == solo_b


def test_cancel_and_queue_full(tiny_parts):
    _, model, tok = tiny_parts
    eng = DecodeEngine(model, tok, max_batch=1, max_queue=1, gather_ms=0)
    try:
        events = []
        slow = GenRequest(_ids(tok, "a"), None, SamplingParams(max_tokens=500, temperature=0, ignore_eos=True), events.append)
        eng.submit(slow)
        while eng.active == 0:
            time.sleep(0.001)
        waiting = GenRequest(_ids(tok, "b"), None, SamplingParams(max_tokens=3, temperature=0), lambda e: None)
        eng.submit(waiting)
        with pytest.raises(QueueFull):
            eng.submit(GenRequest(_ids(tok, "c"), None, SamplingParams(max_tokens=3), lambda e: None))
        slow.cancel()
        deadline = time.time() + 10
        while eng.queued and time.time() < deadline:  # the cancelled request leaves; the waiting one is admitted
            time.sleep(0.001)
        text, done = eng.generate(_ids(tok, "d"), None, SamplingParams(max_tokens=3, temperature=0))
        assert done.finish_reason in ("stop", "length") and eng.active == 0
        assert not any(e.kind == "done" for e in events)  # the cancelled request never finished
    finally:
        eng.close()


@pytest.mark.parametrize("temperature", [1e-300, 5e-324, 1e-40, 1e-3])
def test_tiny_temperatures_decode_greedily_and_never_fail_the_batch(engine, tiny_parts, temperature):
    _, model, tok = tiny_parts
    greedy = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    tiny = SamplingParams(max_tokens=8, temperature=temperature, top_p=0.9, ignore_eos=True)
    jobs = [(_ids(tok, x), tiny if i % 2 else greedy) for i, x in enumerate(INPUTS * 2)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda j: engine.generate(j[0], None, j[1]), jobs))
    reference = {x: engine.generate(_ids(tok, x), None, greedy)[0] for x in INPUTS}
    assert [text for text, _ in results] == [reference[x] for x in INPUTS * 2]  # every row answered, greedily


def _nan_adapter(lora):
    """A copy of adapter ``lora`` whose factors are NaN (what a checkpoint with NaN weights generates)."""
    from dataclasses import replace

    return replace(lora, factors={k: (torch.full_like(a, float("nan")), b.clone()) for k, (a, b) in lora.factors.items()})


def _run_all(engine, jobs):
    """Submit every (ids, adapter, params) job at once; (text, done) per job, or the exception its error raised."""
    def one(job):
        try:
            return engine.generate(*job)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            return e

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs))


def test_nan_adapter_fails_only_its_own_request(engine, tiny_parts):
    from text2lora.serve.engine import NAN_LOGITS

    t2l, _, tok = tiny_parts
    lora = t2l.generate(DESCS)
    params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    solo = [engine.generate(_ids(tok, x), lora.select(i), params)[0] for i, x in enumerate(INPUTS)]
    engine.max_rows_seen = 0
    jobs = [(_ids(tok, x), lora.select(i), params) for i, x in enumerate(INPUTS)]
    jobs.insert(1, (_ids(tok, INPUTS[0]), _nan_adapter(lora.select(0)), params))
    results = _run_all(engine, jobs)
    assert isinstance(results[1], RuntimeError) and str(results[1]) == NAN_LOGITS
    assert [r[0] for r in results[:1] + results[2:]] == solo  # the others, in the same batch, are untouched
    assert engine.max_rows_seen == 4
    assert engine.generate(_ids(tok, INPUTS[0]), lora.select(0), params)[0] == solo[0]  # and the engine serves on


def test_a_failure_while_sampling_one_row_fails_that_row_only(engine, tiny_parts, monkeypatch):
    _, _, tok = tiny_parts
    greedy = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    reference = {x: engine.generate(_ids(tok, x), None, greedy)[0] for x in INPUTS}
    poisoned = SamplingParams(max_tokens=8, temperature=1.0, seed=666, ignore_eos=True)
    real = DecodeEngine._sample_row

    def sample_row(self, logits, row):
        if row.req.params.seed == 666 and len(row.ids) == 3:  # fails mid-stream, at its 4th token
            raise ValueError("injected")
        return real(self, logits, row)

    monkeypatch.setattr(DecodeEngine, "_sample_row", sample_row)
    engine.max_rows_seen = 0
    jobs = [(_ids(tok, x), None, greedy) for x in INPUTS]
    jobs.insert(2, (_ids(tok, INPUTS[0]), None, poisoned))
    results = _run_all(engine, jobs)
    assert isinstance(results[2], RuntimeError) and "ValueError" in str(results[2])
    assert [r[0] for r in results[:2] + results[3:]] == [reference[x] for x in INPUTS]
    assert engine.max_rows_seen == 4 and engine.active == 0


def test_a_prefill_failure_is_retried_one_request_at_a_time(engine, tiny_parts, monkeypatch):
    _, _, tok = tiny_parts
    greedy = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    reference = {x: engine.generate(_ids(tok, x), None, greedy)[0] for x in INPUTS}
    poison = _ids(tok, "poison")
    real = DecodeEngine._forward

    def forward(self, ids, mask, positions, kv, lora):
        if ids.shape[1] > 1 and any(row[-len(poison):].tolist() == poison for row in ids):
            raise RuntimeError("injected prefill failure")
        return real(self, ids, mask, positions, kv, lora)

    monkeypatch.setattr(DecodeEngine, "_forward", forward)
    jobs = [(_ids(tok, x), None, greedy) for x in INPUTS] + [(poison, None, greedy)]
    results = _run_all(engine, jobs)
    assert isinstance(results[-1], RuntimeError) and "internal error" in str(results[-1])
    assert [r[0] for r in results[:-1]] == [reference[x] for x in INPUTS]


def test_submit_refuses_what_would_fail_a_batch(engine, tiny_parts):
    from dataclasses import replace

    from text2lora.errors import Text2LoraError

    t2l, _, tok = tiny_parts
    lora = t2l.generate(DESCS[:2])
    params = SamplingParams(max_tokens=2, temperature=0)
    ids = _ids(tok, "x")
    engine.generate(ids, lora.select(0), params)
    with pytest.raises(Text2LoraError, match="one adapter"):
        engine.submit(GenRequest(ids, lora, params, lambda e: None))
    other_rank = replace(lora.select(0), config=replace(lora.config, rank=lora.rank + 1),
                         factors={k: (torch.zeros(*a.shape[:2], a.shape[2] + 1, a.shape[3]),
                                      torch.zeros(*b.shape[:3], b.shape[3] + 1))
                                  for k, (a, b) in lora.select(0).factors.items()})
    with pytest.raises(Text2LoraError, match="rank"):
        engine.submit(GenRequest(ids, other_rank, params, lambda e: None))
    for bad in ([], [engine.vocab_size], [-1]):
        with pytest.raises(Text2LoraError):
            engine.submit(GenRequest(bad, None, params, lambda e: None))


def test_close_answers_running_and_waiting_requests_unavailable(tiny_parts):
    from text2lora.errors import Unavailable

    _, model, tok = tiny_parts
    eng = DecodeEngine(model, tok, max_batch=1, gather_ms=0)
    long = SamplingParams(max_tokens=2000, temperature=0, ignore_eos=True)
    events = [[], []]
    for i in range(2):
        eng.submit(GenRequest(_ids(tok, "a"), None, long, events[i].append))
    while eng.active == 0:
        time.sleep(0.001)
    eng.close()
    for ev in events:  # the running one and the waiting one
        assert ev[-1].kind == "error" and isinstance(ev[-1].error, Unavailable)
    with pytest.raises(Unavailable):
        eng.submit(GenRequest(_ids(tok, "a"), None, long, lambda e: None))
