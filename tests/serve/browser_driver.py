"""Drive the web page with Debian's chromium through playwright (no downloaded browser), and a live server helper."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def browser_available() -> str | None:
    """None if the browser test can run, else why not (``make install`` installs chromium and playwright)."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        missing.append("chromium")
    if not missing:
        return None
    marker = Path(sys.prefix) / ".browser-unavailable"  # written by scripts/install_browser_test.sh on failure
    if marker.is_file():
        return f"{' and '.join(missing)} could not be installed by make install: {marker.read_text().strip()}"
    return f"{' and '.join(missing)} not installed: run make install (scripts/install_browser_test.sh)"


@contextlib.contextmanager
def live_server(app):
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def drive(url: str, description: str, user_input: str, screenshot: Path | None = None, timeout_ms: int = 60_000,
          examples: str | None = None) -> dict:
    """Open the page, create an adapter (from ``examples`` too, "input => output" lines, when given), run one
    input; return what the page shows."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.goto(url + "/", wait_until="domcontentloaded")
            page.fill("#description", description)
            if examples is not None:
                page.wait_for_selector("#examples", state="visible", timeout=timeout_ms)
                page.fill("#examples", examples)
            page.click("#generate")
            page.wait_for_selector("#adapter.shown", timeout=timeout_ms)
            page.fill("#input", user_input)
            page.click("#run")
            page.wait_for_selector('#adapted-log .msg.assistant[data-done="true"]', timeout=timeout_ms)
            page.wait_for_selector('#base-log .msg.assistant[data-done="true"]', timeout=timeout_ms)
            shown = {
                "adapter_id": page.inner_text("#adapter-id"),
                "generation_ms": page.inner_text("#gen-ms"),
                "download": page.get_attribute("#download", "href"),
                "base": page.inner_text("#base-log .msg.assistant"),
                "adapted": page.inner_text("#adapted-log .msg.assistant"),
                "error": page.inner_text("#run-error") + page.inner_text("#adapter-error"),
            }
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            return shown
        finally:
            browser.close()
