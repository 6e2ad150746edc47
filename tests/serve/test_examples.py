"""Worked examples over HTTP: `POST /v1/adapters` and both completion endpoints take `examples`, which change the
adapter (and its id), are validated by the library's one check (400 in OpenAI's shape naming the example), and a
server whose checkpoint reads descriptions only says so."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch

DESC = "Write the word backwards."
SHOTS = [{"input": "cat", "output": "tac"}, {"input": "dog", "output": "god"}]


@pytest.fixture(scope="module")
def shots_t2l(tiny, tmp_path_factory):
    from tests.tiny import with_examples
    from text2lora.api import T2L

    return T2L.load(with_examples(tiny[1], tmp_path_factory.mktemp("shots") / "ckpt", max_examples=3))

@pytest.fixture()
def shots_client(shots_t2l, tiny_parts, tmp_path):
    from fastapi.testclient import TestClient

    from text2lora.serve.app import create_app
    from text2lora.serve.limits import ServeLimits
    from text2lora.serve.runtime import build_runtime

    limits = ServeLimits(max_tokens=32, default_max_tokens=6)
    runtime = build_runtime(shots_t2l, tiny_parts[1], tiny_parts[2], limits, store_dir=tmp_path / "store")
    with TestClient(create_app(runtime, limits)) as client:
        yield client


def test_examples_make_another_adapter(shots_client, shots_t2l, tmp_path):
    from text2lora.lora import load_peft_adapter, read_provenance

    plain = shots_client.post("/v1/adapters", json={"description": DESC}).json()
    r = shots_client.post("/v1/adapters", json={"description": DESC, "examples": SHOTS})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["id"] != plain["id"] and info["examples"] == 2 and plain["examples"] == 0
    again = shots_client.post("/v1/adapters", json={"description": DESC, "examples": SHOTS}).json()
    assert again["id"] == info["id"] and again["cached"] is True
    # the adapter is what the API makes from the same description and examples, and says so in its provenance
    data = shots_client.get(f"/v1/adapters/{info['id']}/download").content
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path)
    folder = tmp_path / f"t2l-{info['id']}"
    got = load_peft_adapter(folder, shots_t2l.layout)
    want = shots_t2l.generate([DESC], examples=SHOTS)
    torch.testing.assert_close(got.factors["q_proj"][1], want.factors["q_proj"][1])
    assert read_provenance(folder)["text2lora_examples"].startswith("2 examples, sha256:")
    # the completion endpoints take examples too, and name the same adapter
    chat = shots_client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "sun"}], "task_description": DESC, "examples": SHOTS,
        "max_tokens": 4, "temperature": 0})
    assert chat.status_code == 200, chat.text and chat.json()["model"] == info["model"]
    assert chat.json()["model"] == info["model"]
    comp = shots_client.post("/v1/completions", json={"prompt": "sun", "task_description": DESC, "examples": SHOTS,
                                                       "max_tokens": 3, "temperature": 0})
    assert comp.status_code == 200 and comp.json()["model"] == info["model"]


@pytest.mark.parametrize("examples, message", [
    ("cat -> tac", "must be a list"),
    ([{"input": "cat"}], "examples[0] needs both"),
    ([{"input": "cat", "output": 3}], "must be a string"),
    ([{"input": "cat", "output": ""}], "is empty"),
    ([{"input": "x" * 5000, "output": "y"}], "the limit is 4000"),
    ([{"input": "a", "output": "b"}] * 4, "reads at most 3"),
    ([{"input": "a", "output": "b", "extra": 1}], "unknown field"),
])
def test_bad_examples_are_400_naming_the_example(shots_client, examples, message):
    for path, body in (("/v1/adapters", {"description": DESC, "examples": examples}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}],
                                                 "task_description": DESC, "examples": examples})):
        r = shots_client.post(path, json=body)
        if isinstance(examples, str):  # not even a list: the request schema refuses it
            assert r.status_code == 400 and r.json()["error"]["param"] == "examples", r.text
            continue
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert message in err["message"] and err["param"] == "examples" and err["code"] == "invalid_examples"


def test_examples_need_a_description_and_a_checkpoint_that_reads_them(shots_client, client):
    r = shots_client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "a"}],
                                                        "model": "base", "examples": SHOTS})
    assert r.status_code == 400 and "task_description" in r.json()["error"]["message"]
    r = client.post("/v1/adapters", json={"description": DESC, "examples": SHOTS})  # the description-only server
    assert r.status_code == 400 and "descriptions only" in r.json()["error"]["message"]
    assert client.post("/v1/adapters", json={"description": DESC, "examples": []}).status_code == 200


@pytest.mark.browser
def test_the_page_sends_examples(shots_t2l, tiny_parts, tmp_path):
    from tests.serve.browser_driver import browser_available, drive, live_server
    from text2lora.serve.app import create_app
    from text2lora.serve.limits import ServeLimits
    from text2lora.serve.runtime import build_runtime

    why = browser_available()
    if why:
        pytest.skip(why)
    limits = ServeLimits(max_tokens=64, default_max_tokens=16)
    runtime = build_runtime(shots_t2l, tiny_parts[1], tiny_parts[2], limits)
    with live_server(create_app(runtime, limits)) as url:
        shown = drive(url, DESC, "sun", examples="cat => tac\ndog => god")
    assert not shown["error"]
    assert shown["adapter_id"] == runtime.adapters.id_for(DESC, tuple(
        __import__("text2lora.examples", fromlist=["check_examples"]).check_examples(SHOTS)))
