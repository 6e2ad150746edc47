"""Hypothesis-generated JSON bodies never make the server answer 500; every refusal is OpenAI-shaped."""

from __future__ import annotations

import json

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=40)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "developer", "tool", ""]) | json_values},
    optional={"content": st.text(max_size=60) | json_values | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}), max_size=2)},
)
fields = {
    "model": st.sampled_from(["base", "t2l:", "t2l:" + "a" * 32, "gpt-4", ""]) | json_values,
    "task_description": st.text(max_size=80) | json_values,
    "messages": st.lists(message, max_size=4) | json_values,
    "prompt": st.text(max_size=60) | st.lists(st.text(max_size=20), max_size=4) | json_values,
    "max_tokens": st.integers(-3, 40) | json_values,
    "max_completion_tokens": st.integers(-3, 40) | json_values,
    "temperature": st.floats(-1, 3) | json_values,
    "top_p": st.floats(-1, 2) | json_values,
    "n": st.integers(0, 3) | json_values,
    "stream": st.booleans() | json_values,
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_values,
    "stop": st.text(max_size=70) | st.lists(st.text(max_size=10), max_size=6) | json_values,
    "seed": st.integers(-5, 2**64) | json_values,
    "echo": st.booleans() | json_values,
    "ignore_eos": st.booleans() | json_values,
    "description": st.text(max_size=80) | json_values,
}
bodies = st.fixed_dictionaries({}, optional=fields) | json_values


def _check(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        err = response.json()["error"]
        assert isinstance(err["message"], str) and err["type"]


@pytest.fixture(scope="module")
def fuzz_client(tiny_parts):
    from fastapi.testclient import TestClient

    from text2lora.serve.app import create_app
    from text2lora.serve.limits import ServeLimits
    from text2lora.serve.runtime import build_runtime

    limits = ServeLimits(max_tokens=4, default_max_tokens=4, max_prompt_tokens=64, max_description_chars=60)
    with TestClient(create_app(build_runtime(*tiny_parts, limits), limits)) as client:
        yield client


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/adapters"])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies)
def test_json_bodies_never_500(fuzz_client, path, body):
    try:
        payload = json.dumps(body, allow_nan=True).encode()
    except ValueError:
        return
    _check(fuzz_client.post(path, content=payload, headers={"content-type": "application/json"}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200), path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/adapters"]))
def test_raw_bytes_never_500(fuzz_client, raw, path):
    _check(fuzz_client.post(path, content=raw, headers={"content-type": "application/json"}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(aid=st.text(max_size=70))
def test_adapter_paths_never_500(fuzz_client, aid):
    from urllib.parse import quote

    for suffix in ("", "/download"):
        _check(fuzz_client.get(f"/v1/adapters/{quote(aid, safe='')}{suffix}"))
