"""Every endpoint on the tiny model, in OpenAI's shapes."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import torch

DESC = "Answer with the antonym of the given English adjective."


def _sse(text: str) -> list:
    events = [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_health_and_index(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["trained"] is True
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="description"' in page.text and "/v1/adapters" in page.text


def test_create_get_adapter(client, tiny_parts):
    r = client.post("/v1/adapters", json={"description": DESC})
    assert r.status_code == 200, r.text
    info = r.json()
    assert len(info["id"]) == 32 and info["rank"] == 8 and info["targets"] == ["q_proj", "v_proj"]
    assert info["generation_ms"] > 0 and info["cached"] is False and info["model"] == "t2l:" + info["id"]
    again = client.post("/v1/adapters", json={"description": "  " + DESC.replace(" ", "   ") + "\n"})
    assert again.json()["id"] == info["id"] and again.json()["cached"] is True  # content hash of the normalised text
    other = client.post("/v1/adapters", json={"description": DESC + " Be brief."}).json()
    assert other["id"] != info["id"]
    got = client.get(f"/v1/adapters/{info['id']}")
    assert got.status_code == 200 and got.json()["description"] == DESC
    models = client.get("/v1/models").json()
    ids = [m["id"] for m in models["data"]]
    assert models["object"] == "list" and ids[0] == "base" and "t2l:" + info["id"] in ids


def test_download_is_a_peft_adapter(client, tiny, tiny_parts, tmp_path):
    from text2lora.lora import load_peft_adapter

    t2l = tiny_parts[0]
    aid = client.post("/v1/adapters", json={"description": DESC}).json()["id"]
    r = client.get(f"/v1/adapters/{aid}/download")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path)
    folder = tmp_path / f"t2l-{aid}"
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8 and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    loaded = load_peft_adapter(folder, t2l.layout)
    expected = t2l.generate([DESC])
    for name, (a, b) in expected.factors.items():
        torch.testing.assert_close(loaded.factors[name][0], a)
        torch.testing.assert_close(loaded.factors[name][1], b)
    from peft import LoraConfig

    LoraConfig.from_pretrained(str(folder))  # PEFT reads the config as its own
    # the HTTP download, the API and the CLI write the same files, byte for byte, naming no path of this machine
    from text2lora.cli import main

    t2l.save_adapter(DESC, tmp_path / "api")
    assert main(["generate", DESC, "--out", str(tmp_path / "cli"), "--checkpoint", str(tiny[1])]) == 0
    written = sorted(p.name for p in (tmp_path / "api").iterdir())
    assert written == sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert written == ["adapter_config.json", "adapter_model.safetensors", "text2lora.json"]
    for name in written:
        assert (tmp_path / "api" / name).read_bytes() == (folder / name).read_bytes(), name
        assert (tmp_path / "cli" / name).read_bytes() == (folder / name).read_bytes(), name
    assert config["base_model_name_or_path"] == tiny[0].name  # the folder's name, not its absolute path


def test_chat_completion_shapes(client):
    body = {"model": "base", "messages": [{"role": "user", "content": "hot"}], "max_tokens": 5, "temperature": 0}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "chat.completion" and out["model"] == "base" and out["id"].startswith("chatcmpl-")
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    assert out["usage"]["completion_tokens"] <= 5
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]


def test_adapter_changes_answer_and_names_agree(client):
    msgs = [{"role": "user", "content": "hot"}]
    common = {"messages": msgs, "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    base = client.post("/v1/chat/completions", json={"model": "base", **common}).json()
    by_desc = client.post("/v1/chat/completions", json={"task_description": DESC, **common}).json()
    aid = by_desc["model"].removeprefix("t2l:")
    by_id = client.post("/v1/chat/completions", json={"model": f"t2l:{aid}", **common}).json()
    text = lambda o: o["choices"][0]["message"]["content"]  # noqa: E731
    assert text(by_desc) == text(by_id) != text(base)
    assert by_desc["usage"]["completion_tokens"] == 8 and by_desc["choices"][0]["finish_reason"] == "length"


def test_completions_multi_prompt_echo(client):
    body = {"model": "base", "prompt": ["The cat", "A dog"], "max_tokens": 4, "temperature": 0, "echo": True}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "text_completion" and [c["index"] for c in out["choices"]] == [0, 1]
    assert out["choices"][0]["text"].startswith("The cat") and out["choices"][1]["text"].startswith("A dog")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_streaming_matches_non_streaming(client, path):
    payload = {"messages": [{"role": "user", "content": "tall"}]} if "chat" in path else {"prompt": "tall"}
    body = {"task_description": DESC, "max_tokens": 10, "temperature": 0, "ignore_eos": True, **payload}
    whole = client.post(path, json=body).json()
    r = client.post(path, json={**body, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = _sse(r.text)
    if "chat" in path:
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        expected = whole["choices"][0]["message"]["content"]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    else:
        streamed = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
        expected = whole["choices"][0]["text"]
    assert streamed == expected
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 10


def test_stop_strings_and_sampling_seed(client):
    body = {"model": "base", "prompt": "one two", "max_tokens": 12, "temperature": 0, "ignore_eos": True}
    full = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    stop = full[3:6]
    cut = client.post("/v1/completions", json={**body, "stop": [stop]}).json()["choices"][0]
    assert cut["finish_reason"] == "stop" and cut["text"] == full[: full.find(stop)]
    sampled = {**body, "temperature": 1.0, "top_p": 0.9, "seed": 7}
    a = client.post("/v1/completions", json=sampled).json()["choices"][0]["text"]
    b = client.post("/v1/completions", json=sampled).json()["choices"][0]["text"]
    assert a == b


def test_disk_store_survives_a_restart(make_client, tmp_path):
    first = make_client(store_dir=tmp_path / "store")
    aid = first.post("/v1/adapters", json={"description": DESC}).json()["id"]
    assert (tmp_path / "store" / aid / "adapter_model.safetensors").is_file()
    second = make_client(store_dir=tmp_path / "store")
    r = second.get(f"/v1/adapters/{aid}")
    assert r.status_code == 200 and r.json()["description"] == DESC
