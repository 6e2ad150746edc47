"""The decode engine: per-sample adapters in one batch give exactly what each request gets alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

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
