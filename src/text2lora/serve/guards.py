"""ASGI middleware that keeps the HTTP-level failures in OpenAI's error shape, around the whole app:

* :class:`BodyGuard` reads the request body before the app sees it: over ``max_bytes`` it answers 413 (before
  parsing), and a body that has not fully arrived ``timeout_s`` after the request began answers 408 and closes the
  connection, so a client trickling its body cannot hold a connection (or a request slot) for long;
* :class:`ShutdownGuard` answers 503 for a request the server abandons (uvicorn cancels the requests still running
  when its graceful-shutdown timeout ends, and would answer them with a bare 500); a streaming response that had
  started gets a final ``error`` event and ``[DONE]`` instead.
"""

from __future__ import annotations

import asyncio
import json
import logging

from text2lora.serve.openai_errors import error_body

log = logging.getLogger(__name__)

SHUTTING_DOWN = "the server is shutting down; retry the request"


class BodyGuard:
    """Refuse bodies over ``max_bytes`` (413) and bodies slower than ``timeout_s`` in all (408)."""

    def __init__(self, app, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await send_error(send, 400, "invalid Content-Length header")
                return
            if declared > self.max_bytes:
                await send_error(send, 413, f"the request body is {declared} bytes; the limit is {self.max_bytes}",
                                 "body_too_large")
                return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        chunks, total, more = [], 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                await send_error(send, 408, f"the request body did not arrive within {self.timeout_s:g} s",
                                 "request_timeout", close=True)
                return
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await send_error(send, 413, f"the request body exceeds {self.max_bytes} bytes", "body_too_large")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)


class ShutdownGuard:
    """Turn the cancellation of a request task (the server giving up on it) into a 503 in OpenAI's shape."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"started": False, "complete": False, "stream": False}

        async def tracked(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                headers = dict(message.get("headers") or [])
                state["stream"] = headers.get(b"content-type", b"").startswith(b"text/event-stream")
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["complete"] = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if state["complete"] or (state["started"] and not state["stream"]):
                raise  # nothing left to say (or half a JSON body sent): the server closes the connection
            log.warning("%s %s cut by shutdown: answered 503", scope.get("method"), scope.get("path"))
            if not state["started"]:
                await send_error(send, 503, SHUTTING_DOWN, "unavailable", close=True)
            else:
                event = json.dumps(error_body(503, SHUTTING_DOWN, "unavailable"))
                await send({"type": "http.response.body", "body": f"data: {event}\n\ndata: [DONE]\n\n".encode(),
                            "more_body": False})


def _replay(messages: list[dict], receive):
    pending = list(messages)

    async def replay() -> dict:
        return pending.pop(0) if pending else await receive()

    return replay


async def send_error(send, status: int, message: str, code: str | None = None, *, close: bool = False) -> None:
    """A whole JSON error response, straight to the ASGI ``send`` (``close``: ask the server to drop the
    connection afterwards, for a request whose body was not read to its end)."""
    payload = json.dumps(error_body(status, message, code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
