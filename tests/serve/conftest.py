"""Fixtures for the serving tests: one tiny model and checkpoint per session, an app per limits."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "browser: drives Debian's chromium headless (scripts/install_browser_test.sh)")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    from tests.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_parts(tiny):
    """(T2L, model, tokenizer), loaded once."""
    from text2lora.api import T2L
    from text2lora.models.base import load_base_model

    model_dir, ckpt = tiny
    model, tokenizer = load_base_model(str(model_dir))
    return T2L.load(ckpt), model, tokenizer


@pytest.fixture()
def make_client(tiny_parts):
    """``make_client(**limits)``: a TestClient over a fresh runtime (own cache and engine) on the tiny model."""
    from fastapi.testclient import TestClient

    from text2lora.serve.app import create_app
    from text2lora.serve.limits import ServeLimits
    from text2lora.serve.runtime import build_runtime

    clients = []

    def make(store_dir=None, **overrides):
        limits = ServeLimits(**{"max_tokens": 32, "default_max_tokens": 8, **overrides})
        runtime = build_runtime(*tiny_parts, limits, store_dir=store_dir)
        client = TestClient(create_app(runtime, limits))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture()
def client(make_client):
    return make_client()
