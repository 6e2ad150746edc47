"""A Hugging Face hub cache laid out by hand, so that a hub id resolves to a local folder with HF_HUB_OFFLINE=1.

This is how a user's machine resolves ``base_model_name_or_path`` offline after a download: the hub cache keeps
``models--<owner>--<name>/refs/main`` (a commit hash) and ``snapshots/<hash>/`` (the files). Tests link a local
model folder in, the way ``huggingface_hub`` would have stored it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def link_into_hub_cache(cache: Path, repo_id: str, model_dir: Path) -> Path:
    """Make ``repo_id`` resolve to the files of ``model_dir`` in the hub cache ``cache``; returns the snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for f in Path(model_dir).iterdir():
        if f.is_file():
            (snapshot / f.name).symlink_to(f.resolve())
    return snapshot


def offline_env(cache: Path, hf_home: Path) -> dict[str, str]:
    """The environment of a fresh process that resolves hub ids only from ``cache`` (nothing is downloaded)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
            "HF_HOME": str(hf_home), "TOKENIZERS_PARALLELISM": "false"}


AUTO_PEFT_SCRIPT = """
import sys, torch
from peft import AutoPeftModelForCausalLM
from safetensors.torch import load_file, save_file
adapter, ids_file, out_file = sys.argv[1:4]
model = AutoPeftModelForCausalLM.from_pretrained(adapter).eval()
with torch.no_grad():
    logits = model(input_ids=load_file(ids_file)["ids"]).logits
save_file({"logits": logits.contiguous()}, out_file)
print(model.peft_config["default"].base_model_name_or_path)
"""


def auto_peft_logits(adapter: Path, ids, work: Path, env: dict[str, str], user: str | None = None):
    """Logits of ``AutoPeftModelForCausalLM.from_pretrained(adapter)`` in a fresh process (as ``user`` via
    runuser when given); returns (logits, the base name PEFT read)."""
    from safetensors.torch import load_file, save_file

    ids_file, out_file = work / "ids.safetensors", work / "logits.safetensors"
    save_file({"ids": ids.contiguous()}, str(ids_file))
    os.chmod(ids_file, 0o644)
    cmd = [sys.executable, "-c", AUTO_PEFT_SCRIPT, str(adapter), str(ids_file), str(out_file)]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_file(str(out_file))["logits"], proc.stdout.strip().splitlines()[-1]
