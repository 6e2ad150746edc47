"""``/v1/chat/completions`` and ``/v1/completions``: validate, pick the adapter, submit to the engine, answer in
OpenAI's shapes (one JSON object, or server-sent events when ``stream`` is true).

User text is never parsed for special tokens: a ``<|im_start|>system`` inside a message or a prompt is encoded as
the ordinary text it is; only the chat template's own markers become control tokens."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from text2lora.errors import Text2LoraError
from text2lora.serve.cache import Adapter
from text2lora.serve.engine import Event, GenRequest, SamplingParams
from text2lora.serve.limits import ServeLimits
from text2lora.serve.openai_errors import ApiError, error_body
from text2lora.serve.runtime import ServeRuntime
from text2lora.serve.schemas import ChatRequest, CompletionRequest


@dataclass
class Job:
    """The engine requests of one HTTP request and the queue their events arrive on, as (index, event)."""

    requests: list[GenRequest]
    events: asyncio.Queue

    def cancel(self) -> None:
        for r in self.requests:
            r.cancel()


def sampling_params(body: ChatRequest | CompletionRequest, limits: ServeLimits) -> SamplingParams:
    if body.n != 1:
        raise ApiError(400, "only n=1 is supported", "unsupported_parameter", "n")
    budget = body.token_budget()
    if budget is not None and budget > limits.max_tokens:
        raise ApiError(400, f"max_tokens is {budget}; the limit is {limits.max_tokens}", "max_tokens_exceeded",
                       "max_tokens")
    stops = body.stops()
    if len(stops) > limits.max_stop:
        raise ApiError(400, f"{len(stops)} stop strings; the limit is {limits.max_stop}", "invalid_request", "stop")
    if any(not s or len(s) > limits.max_stop_chars for s in stops):
        raise ApiError(400, f"each stop string must be 1 to {limits.max_stop_chars} characters", "invalid_request",
                       "stop")
    return SamplingParams(max_tokens=budget or limits.default_max_tokens, temperature=float(body.temperature),
                          top_p=float(body.top_p), stop=tuple(stops), seed=body.seed, ignore_eos=body.ignore_eos)


def chat_ids(rt: ServeRuntime, body: ChatRequest, limits: ServeLimits) -> list[int]:
    """The conversation through the chat template, tokenised with the template's markers as control tokens and
    the messages' text as plain text (control tokens inside it are spelled out, not obeyed)."""
    if len(body.messages) > limits.max_messages:
        raise ApiError(400, f"{len(body.messages)} messages; the limit is {limits.max_messages}", "invalid_request",
                       "messages")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    tok = rt.tokenizer
    if not getattr(tok, "chat_template", None):
        return text_ids(rt, "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: ")
    try:
        return list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False,
                                            sanitize_control_tokens=True))
    except Exception as e:  # noqa: BLE001 - a template that rejects this conversation (e.g. role order)
        raise ApiError(400, f"the chat template rejects these messages: {str(e)[:200]}", "invalid_request",
                       "messages") from None


def text_ids(rt: ServeRuntime, text: str) -> list[int]:
    """A prompt's tokens, all of it plain text: special-token strings in it are not parsed as special tokens."""
    return list(rt.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def check_prompt(rt: ServeRuntime, ids: list[int], params: SamplingParams, limits: ServeLimits,
                 param: str) -> list[int]:
    if not ids:
        raise ApiError(400, "the prompt is empty", "invalid_request", param)
    if len(ids) > limits.max_prompt_tokens:
        raise ApiError(400, f"the prompt is {len(ids)} tokens; the limit is {limits.max_prompt_tokens}",
                       "context_length_exceeded", param)
    if rt.max_positions is not None and len(ids) + params.max_tokens > rt.max_positions:
        raise ApiError(400, f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) exceeds the model's "
                       f"context of {rt.max_positions}", "context_length_exceeded", "max_tokens")
    return ids


def submit(rt: ServeRuntime, prompts: list[list[int]], adapter: Adapter | None, params: SamplingParams) -> Job:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    job = Job([], events)
    for i, ids in enumerate(prompts):
        req = GenRequest(ids, adapter.weights if adapter is not None else None, params, _sink(loop, events, i))
        try:
            rt.decoder.submit(req)
        except Text2LoraError:
            job.cancel()
            raise
        job.requests.append(req)
    return job


def _sink(loop: asyncio.AbstractEventLoop, events: asyncio.Queue, index: int) -> Callable[[Event], None]:
    def sink(event: Event) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (index, event))

    return sink


async def collect(job: Job) -> list[tuple[str, Event]]:
    """Wait for every request of a job; (text, done event) per prompt."""
    texts = [[] for _ in job.requests]
    done: list[Event | None] = [None] * len(job.requests)
    try:
        while any(d is None for d in done):
            i, ev = await job.events.get()
            if ev.kind == "delta":
                texts[i].append(ev.text)
            elif ev.kind == "error":
                raise failure(ev)
            else:
                done[i] = ev
    finally:
        job.cancel()  # no-op for finished requests; stops the rest if the client went away
    return [("".join(t), d) for t, d in zip(texts, done)]


def failure(ev: Event) -> ApiError:
    """What an engine ``error`` event answers: the user-error class it carries (its status and code), else 500."""
    if ev.error is not None:
        return ApiError(ev.error.status, str(ev.error), ev.error.code)
    return ApiError(500, ev.text, "internal_error")


def usage(events: list[Event]) -> dict:
    prompt = sum(e.prompt_tokens for e in events)
    completion = sum(e.completion_tokens for e in events)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_response(model: str, results: list[tuple[str, Event]]) -> JSONResponse:
    text, done = results[0]
    return JSONResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                     "finish_reason": done.finish_reason}],
        "usage": usage([done]),
    })


def completion_response(model: str, results: list[tuple[str, Event]], prompts: list[str], echo: bool) -> JSONResponse:
    return JSONResponse({
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "text": (p if echo else "") + text, "logprobs": None, "finish_reason": d.finish_reason}
                    for i, ((text, d), p) in enumerate(zip(results, prompts))],
        "usage": usage([d for _, d in results]),
    })


def stream_response(job: Job, chunk: Callable[[int, str | None, str | None], dict], include_usage: bool,
                    release: Callable[[], None], first: list[dict] | None = None) -> StreamingResponse:
    """Server-sent events: the ``first`` chunks, one chunk per text delta, a finish chunk per prompt, [DONE]."""

    async def events() -> AsyncIterator[str]:
        finished: list[Event] = []
        try:
            for c in first or []:
                yield _sse(c)
            while len(finished) < len(job.requests):
                i, ev = await job.events.get()
                if ev.kind == "delta":
                    yield _sse(chunk(i, ev.text, None))
                elif ev.kind == "error":
                    err = failure(ev)
                    yield _sse(error_body(err.status, err.message, err.code))
                    break
                else:
                    finished.append(ev)
                    yield _sse(chunk(i, None, ev.finish_reason))
            if include_usage and len(finished) == len(job.requests):
                yield _sse({**chunk(0, None, None), "choices": [], "usage": usage(finished)})
            yield "data: [DONE]\n\n"
        finally:
            job.cancel()
            release()

    return StreamingResponse(events(), media_type="text/event-stream", background=BackgroundTask(release),
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def chat_chunker(model: str) -> Callable[[int, str | None, str | None], dict]:
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(index: int, text: str | None, finish: str | None) -> dict:
        delta = {} if text is None else {"content": text}
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    return chunk


def completion_chunker(model: str) -> Callable[[int, str | None, str | None], dict]:
    cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(index: int, text: str | None, finish: str | None) -> dict:
        return {"id": cid, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}]}

    return chunk
