"""The web page in a real (headless) browser: describe a task, get an adapter id, see the adapted answer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.serve.browser_driver import browser_available, drive, live_server

pytestmark = pytest.mark.browser


def test_page_creates_adapter_and_answers(tiny_parts, tmp_path):
    why = browser_available()
    if why:
        pytest.skip(why)
    from text2lora.serve.app import create_app
    from text2lora.serve.limits import ServeLimits
    from text2lora.serve.runtime import build_runtime

    limits = ServeLimits(max_tokens=64, default_max_tokens=32)
    app = create_app(build_runtime(*tiny_parts, limits), limits)
    shot = Path(os.environ.get("T2L_SCREENSHOT", tmp_path / "page.png"))
    with live_server(app) as url:
        shown = drive(url, "Answer with the antonym of the given English adjective.", "hot", screenshot=shot)
    assert len(shown["adapter_id"]) == 32 and float(shown["generation_ms"]) > 0
    assert shown["download"] == f"/v1/adapters/{shown['adapter_id']}/download"
    assert shown["adapted"].strip() and shown["adapted"] != "..." and not shown["error"]
    assert shown["adapted"] != shown["base"]  # the tiny checkpoint's adapters change the answer
    assert shot.stat().st_size > 1000


def test_skip_reason_names_why_the_install_failed(monkeypatch, tmp_path):
    """Where make install could not install chromium, the skip says what failed (the script's marker)."""
    from tests.serve import browser_driver

    monkeypatch.setattr(browser_driver, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setattr(browser_driver.shutil, "which", lambda name: None)
    monkeypatch.setattr(browser_driver.sys, "prefix", str(tmp_path))
    assert "chromium" in browser_driver.browser_available() and "make install" in browser_driver.browser_available()
    (tmp_path / ".browser-unavailable").write_text("apt-get update failed (are Debian's package servers reachable?)\n")
    why = browser_driver.browser_available()
    assert why.endswith("could not be installed by make install: apt-get update failed (are Debian's package "
                        "servers reachable?)") and "chromium" in why
