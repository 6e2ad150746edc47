"""`text2lora serve`: the OpenAI-compatible HTTP server with adapters generated from task descriptions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from text2lora.cli.options import ConfigOpt, SetOpt, settings_from
from text2lora.serve.limits import ServeLimits

_LIMITS = ServeLimits()  # every limit's default comes from here


def serve(
    ctx: typer.Context,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Hypernetwork checkpoint directory (default: the shipped one).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    adapter_store: Annotated[Optional[Path], typer.Option(help="Also keep generated adapters in this directory (survives restarts).")] = None,
    max_batch: Annotated[int, typer.Option(help="Sequences decoded together in one step.")] = _LIMITS.max_batch,
    max_concurrent: Annotated[int, typer.Option(help="Requests served at once; more get HTTP 429.")] = _LIMITS.max_concurrent,
    max_tokens: Annotated[int, typer.Option(help="Largest max_tokens a request may ask for.")] = _LIMITS.max_tokens,
    max_prompt_tokens: Annotated[int, typer.Option(help="Longest prompt, in tokens.")] = _LIMITS.max_prompt_tokens,
    cache_adapters: Annotated[int, typer.Option(help="Adapters kept in memory (LRU).")] = _LIMITS.cache_max_adapters,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's choice).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Serve /v1/chat/completions, /v1/completions and /v1/adapters, plus a web page at /.

    A request names its adapter with "model": "t2l:<id>" (from POST /v1/adapters) or gives "task_description";
    "model": "base" is the plain base model. Requests with different adapters are decoded in one batch.
    --config/--set set any ServeLimits field (max_description_chars, cache_max_bytes, gather_ms, ...).
    """
    from text2lora.errors import Text2LoraError

    try:
        import uvicorn

        from text2lora.serve.app import create_app
        from text2lora.serve.runtime import load_runtime
    except ImportError as e:
        raise Text2LoraError(f"serving needs the 'serve' extra ({e.name} is missing): pip install 'text2lora[serve]'") from None
    if threads is not None:
        import torch

        if threads < 1:
            raise Text2LoraError("--threads must be at least 1")
        torch.set_num_threads(threads)
    limits = settings_from(ctx, ServeLimits, config, set_, max_batch=max_batch, max_concurrent=max_concurrent,
                           max_queue=max_concurrent, max_tokens=max_tokens,
                           default_max_tokens=min(_LIMITS.default_max_tokens, max_tokens),
                           max_prompt_tokens=max_prompt_tokens, cache_max_adapters=cache_adapters,
                           option_names={"cache_max_adapters": "cache_adapters", "max_queue": "max_concurrent",
                                         "default_max_tokens": "max_tokens"})
    runtime = load_runtime(checkpoint, limits, store_dir=adapter_store)
    app = create_app(runtime, limits)
    typer.echo(f"text2lora: serving {runtime.base_model} on http://{host}:{port}/", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=limits.shutdown_grace_s)
