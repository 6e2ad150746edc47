"""`text2lora serve` end to end: a real uvicorn process on 127.0.0.1 with the tiny checkpoint."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cmd: list[str], port: int, timeout: float = 300) -> tuple[subprocess.Popen, str]:
    """Start ``cmd`` (a `text2lora serve` on ``port``) and wait until /health answers; (process, base url)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read())
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("the server did not start")
        time.sleep(0.2)


def test_serve_command(tiny, tmp_path):
    _, ckpt = tiny
    port = _free_port()
    cmd = [sys.executable, "-m", "text2lora", "serve", "--checkpoint", str(ckpt), "--port", str(port),
           "--max-tokens", "16", "--threads", "1", "--adapter-store", str(tmp_path / "store"), "--log-level", "warning"]
    proc, url = start_server(cmd, port)
    try:
        body = {"task_description": "Sort the words.", "messages": [{"role": "user", "content": "b a"}],
                "max_tokens": 4, "temperature": 0}
        r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
        assert r.status_code == 200 and r.json()["model"].startswith("t2l:")
        too_many = httpx.post(f"{url}/v1/chat/completions", json={**body, "max_tokens": 17}, timeout=60)
        assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "max_tokens_exceeded"
        assert len(list((tmp_path / "store").iterdir())) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_rejects_bad_threads(tiny):
    out = subprocess.run([sys.executable, "-m", "text2lora", "serve", "--checkpoint", str(tiny[1]), "--threads", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--threads must be at least 1" in out.stderr
