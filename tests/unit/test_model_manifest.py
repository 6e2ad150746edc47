"""The converted base model in the cache is checked before use: sizes always, hashes on request, a folder made
before manifests by its safetensors headers; a damaged one is converted again instead of loaded."""

import torch
from safetensors.torch import save_file

from text2lora.models import bundled
from text2lora.models.manifest import VERIFY_ENV, folder_problem, manifest_path, safetensors_problem, write_manifest


def fake_folder(root):
    folder = root / "models" / bundled._CONVERTED_NAME
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    save_file({"w": torch.arange(1000, dtype=torch.float32)}, str(folder / "model.safetensors"))
    return folder


def test_sizes_are_checked_always_and_hashes_when_asked(tmp_path, monkeypatch):
    folder = fake_folder(tmp_path)
    write_manifest(folder)
    assert manifest_path(folder).is_file() and not (folder / manifest_path(folder).name).exists()
    assert folder_problem(folder) is None
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # same size, other content
    weights.write_bytes(bytes(data))
    assert folder_problem(folder) is None  # the cheap check cannot see it...
    monkeypatch.setenv(VERIFY_ENV, "1")
    assert "changed since it was converted" in folder_problem(folder)  # ...the hash can
    weights.write_bytes(bytes(data[:-10]))
    assert folder_problem(folder) == "model.safetensors is 4,062 bytes; it was 4,072 when converted"


def test_a_folder_without_a_manifest_is_checked_by_its_headers_then_adopted(tmp_path):
    folder = fake_folder(tmp_path)
    weights = folder / "model.safetensors"
    full = weights.read_bytes()
    weights.write_bytes(full[:-100])
    assert "its header says 4,072" in safetensors_problem(weights)
    assert "its header says" in folder_problem(folder)
    assert not manifest_path(folder).exists()
    weights.write_bytes(full)
    assert folder_problem(folder) is None and manifest_path(folder).is_file()  # adopted
    weights.write_bytes(b"\xff" * 7)
    assert "too short" in safetensors_problem(weights)


def test_a_truncated_cached_model_is_converted_again(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TEXT2LORA_HOME", str(tmp_path))
    folder = fake_folder(tmp_path)
    write_manifest(folder)
    converted = []
    monkeypatch.setattr(bundled, "_convert_bundled_base", lambda target: converted.append(target) or target)
    assert bundled.bundled_base_dir() == folder and converted == []
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    with caplog.at_level("WARNING"):
        assert bundled.bundled_base_dir() == folder
    assert converted == [folder] and not manifest_path(folder).exists()
    assert "is damaged (model.safetensors is 500 bytes; it was 4,072 when converted): converting it again" in caplog.text
