"""The FastAPI application: OpenAI-compatible completions with adapters generated from task descriptions.

    from text2lora.serve import create_app, load_runtime
    app = create_app(load_runtime("ckpt"))   # then: uvicorn.run(app)

Routes: ``POST /v1/adapters``, ``GET /v1/adapters/{id}``, ``GET /v1/adapters/{id}/download`` (PEFT zip),
``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``, ``GET /health`` and the web page ``/``.
A request picks its adapter with ``"model": "t2l:<id>"`` or ``"task_description"``; ``"model": "base"`` means none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from text2lora.errors import Text2LoraError
from text2lora.serve import completions as cmp
from text2lora.serve.cache import Adapter, is_adapter_id
from text2lora.serve.limits import ServeLimits
from text2lora.serve.guards import BodyGuard, ShutdownGuard
from text2lora.serve.openai_errors import ApiError, install_error_handlers
from text2lora.serve.runtime import ServeRuntime
from text2lora.serve.schemas import AdapterRequest, ChatRequest, CompletionRequest

ADAPTER_PREFIX = "t2l:"


class Slots:
    """A bound on requests in service at once; over it, 429 (no waiting: the client retries)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def acquire(self) -> Callable[[], None]:
        if self.used >= self.limit:
            raise ApiError(429, f"{self.used} requests are in progress; the limit is {self.limit}",
                           "too_many_requests")
        self.used += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.used -= 1

        return release

    @contextmanager
    def hold(self) -> Iterator[_Held]:
        """A slot for the block; released at its end unless a streaming response took it over (``hand_off``)."""
        held = _Held(self.acquire())
        try:
            yield held
        finally:
            if not held.handed_off:
                held.release()


@dataclass
class _Held:
    release: Callable[[], None]
    handed_off: bool = False

    def hand_off(self) -> Callable[[], None]:
        """The release function, for a response that ends after the handler returns."""
        self.handed_off = True
        return self.release


@dataclass
class Context:
    """What every route needs: the loaded runtime, the limits and the request slots (one per app)."""

    runtime: ServeRuntime
    limits: ServeLimits
    slots: Slots

    def check_request(self, description: str, examples: list | None) -> tuple[str, tuple]:
        """The server's own bound on description length, then the library's one description check (empty, not
        valid text: :func:`~text2lora.encoders.check_descriptions`) and its one examples check
        (:func:`~text2lora.examples.check_examples`), which the CLI and the API use too."""
        from text2lora.encoders import check_descriptions
        from text2lora.examples import check_examples

        check_descriptions([description], max_chars=self.limits.max_description_chars)
        try:
            checked = check_examples(examples)
            self.runtime.t2l.require_examples(len(checked))
        except Text2LoraError as e:
            raise ApiError(400, str(e), "invalid_examples", "examples") from None
        return description, tuple(checked)

    async def adapter_for(self, description: str, examples: list | None = None) -> Adapter:
        description, checked = self.check_request(description, examples)
        return await asyncio.wrap_future(self.runtime.adapters.get_or_create(description, checked))

    async def adapter_by_id(self, aid: str) -> Adapter:
        future = self.runtime.adapters.by_id(aid) if is_adapter_id(aid) else None
        if future is None:
            raise ApiError(404, f"no adapter {aid!r}: create one with POST /v1/adapters", "adapter_not_found")
        return await asyncio.wrap_future(future)

    async def resolve(self, model: str, description: str | None, examples: list | None = None,
                      ) -> tuple[str, Adapter | None]:
        """(the model name to report, the adapter or None for the base model)."""
        if examples and description is None:
            raise ApiError(400, "examples shape the adapter made from a task_description: give one with them",
                           "invalid_request", "examples")
        if description is not None:
            adapter = await self.adapter_for(description, examples)
            if model.startswith(ADAPTER_PREFIX) and model[len(ADAPTER_PREFIX):] != adapter.id:
                raise ApiError(400, f"model {model!r} and task_description name different adapters "
                               f"(the description gives t2l:{adapter.id})", "invalid_request", "model")
            return ADAPTER_PREFIX + adapter.id, adapter
        if model in ("base", self.runtime.base_model):
            return "base", None
        if model.startswith(ADAPTER_PREFIX):
            return model, await self.adapter_by_id(model[len(ADAPTER_PREFIX):])
        raise ApiError(404, f"unknown model {model[:100]!r}: use 'base', 't2l:<adapter id>' or give a "
                       "task_description", "model_not_found", "model")


def context(request: Request) -> Context:
    return request.app.state.context


Ctx = Annotated[Context, Depends(context)]
router = APIRouter()


def create_app(runtime: ServeRuntime, limits: ServeLimits | None = None) -> FastAPI:
    """The ASGI app over a loaded :class:`ServeRuntime` (closed when the app shuts down)."""
    limits = limits or ServeLimits()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await asyncio.to_thread(runtime.close)  # off the event loop: requests cut by shutdown still get their 503

    app = FastAPI(title="text2lora", version=_version(), lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.add_middleware(BodyGuard, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    app.add_middleware(ShutdownGuard)  # added last: the outermost, so a cut body read is a 503 too
    install_error_handlers(app)
    slots = Slots(limits.max_concurrent)
    app.state.runtime, app.state.limits, app.state.slots = runtime, limits, slots
    app.state.context = Context(runtime, limits, slots)
    app.include_router(router)
    return app


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(resources.files("text2lora.serve").joinpath("static/index.html").read_text("utf-8"))


@router.get("/health")
async def health(ctx: Ctx) -> dict:
    runtime = ctx.runtime
    meta = runtime.t2l.meta
    return {"status": "ok", "base_model": meta.base_model, "trained": meta.trained,
            "active": runtime.decoder.active, "queued": runtime.decoder.queued, "in_progress": ctx.slots.used,
            "cached_adapters": len(runtime.cache), "cache_bytes": runtime.cache.nbytes,
            "max_examples": runtime.t2l.max_examples}


@router.get("/v1/models")
async def models(ctx: Ctx) -> dict:
    runtime, created = ctx.runtime, int(time.time())
    data = [{"id": "base", "object": "model", "created": created, "owned_by": "text2lora",
             "root": runtime.base_model}]
    for item in runtime.cache.snapshot():
        data.append({"id": ADAPTER_PREFIX + item.id, "object": "model", "created": item.created,
                     "owned_by": "text2lora", "root": runtime.base_model, "parent": "base",
                     "description": item.description})
    return {"object": "list", "data": data}


@router.post("/v1/adapters")
async def create_adapter(body: AdapterRequest, ctx: Ctx) -> dict:
    with ctx.slots.hold():
        description, examples = ctx.check_request(body.description, body.examples)
        known = ctx.runtime.cache.get(ctx.runtime.adapters.id_for(description, examples)) is not None
        return {**_adapter_info(await ctx.adapter_for(body.description, body.examples), ctx.runtime), "cached": known}


@router.get("/v1/adapters/{aid}")
async def get_adapter(aid: str, ctx: Ctx) -> dict:
    return _adapter_info(await ctx.adapter_by_id(aid), ctx.runtime)


@router.get("/v1/adapters/{aid}/download")
async def download_adapter(aid: str, ctx: Ctx) -> Response:
    item = await ctx.adapter_by_id(aid)
    data = await asyncio.to_thread(peft_zip, item, ctx.runtime)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="t2l-{aid}.zip"'})


@router.post("/v1/chat/completions")
async def chat(body: ChatRequest, ctx: Ctx):
    runtime, limits = ctx.runtime, ctx.limits
    with ctx.slots.hold() as held:
        params = cmp.sampling_params(body, limits)
        ids = cmp.check_prompt(runtime, cmp.chat_ids(runtime, body, limits), params, limits, "messages")
        name, adapter = await ctx.resolve(body.model, body.task_description, body.examples)
        job = cmp.submit(runtime, [ids], adapter, params)
        chunk = cmp.chat_chunker(name)
        if not body.stream:
            return cmp.chat_response(name, await cmp.collect(job))
        first = chunk(0, "", None)
        first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        include = bool(body.stream_options and body.stream_options.include_usage)
        return cmp.stream_response(job, chunk, include, held.hand_off(), [first])


@router.post("/v1/completions")
async def completions(body: CompletionRequest, ctx: Ctx):
    runtime, limits = ctx.runtime, ctx.limits
    with ctx.slots.hold() as held:
        params = cmp.sampling_params(body, limits)
        prompts = body.prompts()
        if not 1 <= len(prompts) <= limits.max_prompts:
            raise ApiError(400, f"give 1 to {limits.max_prompts} prompts", "invalid_request", "prompt")
        ids = [cmp.check_prompt(runtime, cmp.text_ids(runtime, p), params, limits, "prompt") for p in prompts]
        name, adapter = await ctx.resolve(body.model, body.task_description, body.examples)
        job = cmp.submit(runtime, ids, adapter, params)
        if not body.stream:
            return cmp.completion_response(name, await cmp.collect(job), prompts, body.echo)
        include = bool(body.stream_options and body.stream_options.include_usage)
        return cmp.stream_response(job, cmp.completion_chunker(name), include, held.hand_off())


def _adapter_info(item: Adapter, runtime: ServeRuntime) -> dict:
    w = item.weights
    return {"id": item.id, "object": "adapter", "model": ADAPTER_PREFIX + item.id, "description": item.description,
            "rank": w.rank, "alpha": w.alpha, "use_rslora": w.use_rslora, "targets": item.targets,
            "base_model": runtime.base_model, "generation_ms": round(item.generation_ms, 2), "created": item.created,
            "bytes": item.nbytes, "examples": item.n_examples}


def peft_zip(item: Adapter, runtime: ServeRuntime) -> bytes:
    """The adapter as a zip of the PEFT directory `text2lora generate` would write for it (the same bytes)."""
    from text2lora.lora import adapter_provenance
    from text2lora.lora import peft_zip as zip_files

    return zip_files(item.weights, f"t2l-{item.id}", base_model_name_or_path=runtime.t2l.peft_base_name(),
                     metadata=adapter_provenance(item.description, runtime.base_model, item.examples))


def _version() -> str:
    from text2lora import __version__

    return __version__

