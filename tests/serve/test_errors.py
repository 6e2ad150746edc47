"""Every limit and user mistake is a 4xx in OpenAI's error shape."""

from __future__ import annotations

import pytest

CHAT = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "hi"}]


def _err(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code
    return err


def test_description_limits(make_client):
    client = make_client(max_description_chars=50)
    _err(client.post("/v1/adapters", json={"description": "x" * 51}), 400, "description_too_long")
    _err(client.post("/v1/adapters", json={"description": "   "}), 400)
    _err(client.post("/v1/adapters", json={"description": 5}), 400)
    _err(client.post("/v1/adapters", json={}), 400)
    _err(client.post(CHAT, json={"messages": MSGS, "task_description": "y" * 51}), 400, "description_too_long")


def test_prompt_and_token_limits(make_client):
    client = make_client(max_prompt_tokens=40, max_tokens=16, max_messages=3, max_prompts=2)
    err = _err(client.post(CHAT, json={"messages": [{"role": "user", "content": "word " * 100}]}), 400,
               "context_length_exceeded")
    assert "limit is 40" in err["message"]
    _err(client.post("/v1/completions", json={"prompt": "word " * 100}), 400, "context_length_exceeded")
    _err(client.post(CHAT, json={"messages": MSGS, "max_tokens": 17}), 400, "max_tokens_exceeded")
    _err(client.post(CHAT, json={"messages": MSGS, "max_completion_tokens": 17}), 400, "max_tokens_exceeded")
    _err(client.post(CHAT, json={"messages": MSGS, "max_tokens": 0}), 400)
    _err(client.post(CHAT, json={"messages": MSGS * 4}), 400)
    _err(client.post(CHAT, json={"messages": []}), 400)
    _err(client.post("/v1/completions", json={"prompt": ["a", "b", "c"]}), 400)
    _err(client.post("/v1/completions", json={"prompt": ""}), 400)
    _err(client.post("/v1/completions", json={"prompt": [1, 2, 3]}), 400)


def test_sampling_parameters(client):
    _err(client.post(CHAT, json={"messages": MSGS, "n": 2}), 400, "unsupported_parameter")
    _err(client.post(CHAT, json={"messages": MSGS, "temperature": 3}), 400)
    _err(client.post(CHAT, json={"messages": MSGS, "top_p": 0}), 400)
    _err(client.post(CHAT, json={"messages": MSGS, "stop": ["a", "b", "c", "d", "e"]}), 400)
    _err(client.post(CHAT, json={"messages": MSGS, "stop": [""]}), 400)
    _err(client.post(CHAT, json={"messages": MSGS, "stop": "x" * 65}), 400)
    _err(client.post(CHAT, json={"messages": MSGS, "seed": -1}), 400)
    _err(client.post(CHAT, json={"messages": [{"role": "robot", "content": "x"}]}), 400)


def test_models_and_adapters_not_found(client):
    _err(client.post(CHAT, json={"model": "gpt-4", "messages": MSGS}), 404, "model_not_found")
    _err(client.post(CHAT, json={"model": "t2l:" + "0" * 32, "messages": MSGS}), 404, "adapter_not_found")
    _err(client.post(CHAT, json={"model": "t2l:../../etc", "messages": MSGS}), 404, "adapter_not_found")
    _err(client.get("/v1/adapters/" + "f" * 32), 404, "adapter_not_found")
    _err(client.get("/v1/adapters/nothex/download"), 404, "adapter_not_found")
    aid = client.post("/v1/adapters", json={"description": "Sort words."}).json()["id"]
    _err(client.post(CHAT, json={"model": f"t2l:{aid}", "task_description": "Other task.", "messages": MSGS}), 400)


def test_http_level_errors(make_client):
    client = make_client(max_body_bytes=1000)
    big = {"messages": [{"role": "user", "content": "x" * 2000}]}
    _err(client.post(CHAT, json=big), 413, "body_too_large")

    def chunked():
        yield b'{"messages": ['
        for _ in range(100):
            yield b'{"role": "user", "content": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},'
        yield b"]}"

    _err(client.post(CHAT, content=chunked(), headers={"content-type": "application/json"}), 413, "body_too_large")
    _err(client.post(CHAT, content=b"{not json", headers={"content-type": "application/json"}), 400)
    _err(client.post(CHAT, content=b"[1, 2]", headers={"content-type": "application/json"}), 400)
    _err(client.post(CHAT, content=b"", headers={"content-type": "application/json"}), 400)
    _err(client.get("/v1/nothing"), 404)
    _err(client.get(CHAT), 405)
    _err(client.delete("/v1/models"), 405)


def test_too_many_requests_and_queue_full(make_client):
    client = make_client(max_concurrent=2)
    app = client.app
    app.state.slots.used = 2  # as if two requests were in progress
    _err(client.post(CHAT, json={"messages": MSGS}), 429, "too_many_requests")
    _err(client.post("/v1/adapters", json={"description": "x"}), 429, "too_many_requests")
    app.state.slots.used = 0
    app.state.runtime.decoder.max_queue = 0  # as if the queue were full
    _err(client.post(CHAT, json={"messages": MSGS}), 429, "queue_full")
    assert app.state.slots.used == 0  # slots are released on every error path
    app.state.runtime.decoder.max_queue = 64
    assert client.post(CHAT, json={"messages": MSGS, "max_tokens": 2}).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_slots_released_after_success(client, stream):
    for _ in range(3):
        r = client.post(CHAT, json={"messages": MSGS, "max_tokens": 2, "stream": stream})
        assert r.status_code == 200
    assert client.app.state.slots.used == 0


def test_lone_surrogates_are_a_400_everywhere(client):
    import json

    bad = "\ud83d"  # sent as the JSON escape \ud83d: valid JSON, but not encodable text

    def post(url, body):  # json.dumps escapes it (ensure_ascii); httpx's own JSON encoder would refuse to send it
        return client.post(url, content=json.dumps(body).encode(), headers={"content-type": "application/json"})

    _err(post("/v1/adapters", {"description": f"Translate {bad} words."}), 400)
    _err(post(CHAT, {"messages": MSGS, "task_description": bad}), 400)
    _err(post(CHAT, {"messages": [{"role": "user", "content": bad}]}), 400)
    _err(post(CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": bad}]}]}), 400)
    _err(post("/v1/completions", {"prompt": ["ok", bad]}), 400)
    assert post("/v1/adapters", {"description": "Translate \U0001F600 words."}).status_code == 200  # a pair is fine
