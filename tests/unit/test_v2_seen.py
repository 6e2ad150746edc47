"""The v2 seen benchmark: its selection rules (benchmarks/v2/seen.json), the stages of `quality.py --scale v2
--split seen`, and its claims; and a guard that adding it left the v2 test/validation stages (their names,
commands and inputs, so their cache keys) exactly as they were."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1].parent
#: the v2 test/validation plans for the fixture below, made by the code before the seen split existed
GOLDEN = REPO / "tests" / "fixtures" / "v2_stages.json"


def _load(name: str):
    from tests.unit.test_eval_pipeline import _load as load

    return load(name)


def _normalise(obj, tmp_path: Path):
    text = json.dumps(obj, sort_keys=True)
    for path, mark in ((sys.executable, "<python>"), (str(tmp_path), "<tmp>"), (str(REPO), "<repo>")):
        text = text.replace(json.dumps(path)[1:-1], mark)
    return json.loads(text)


def v2_plan(tmp_path: Path, split: str, methods: str | None = None) -> list[dict]:
    """The v2 stages of ``split`` for a fixture (tiny library, a stand-in checkpoint, a selection in place),
    as ``[{name, command, inputs}]`` with the machine's paths replaced by placeholders."""
    from tests.tiny import build_library

    quality = _load("quality")
    library = tmp_path / "lib"
    if not (library / "index.json").is_file():
        build_library(library, n=64)
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir(exist_ok=True)
    (checkpoint / "hypernet.safetensors").write_bytes(b"stand-in weights")
    work = tmp_path / "work"
    args = argparse.Namespace(library=str(library), scale="v2", split=split, seed=0, methods=methods, groups=None,
                              t2l_checkpoint=str(checkpoint), multitask_steps=None)
    select = quality.build_v2_stages(args, work)[0]
    (work / "stages").mkdir(parents=True, exist_ok=True)
    (work / "tasks.json").write_text(json.dumps({"eval": ["first"]}))
    (work / "stages" / "select.json").write_text(json.dumps({"fingerprint": select.fingerprint}))
    stages = quality.build_v2_stages(args, work)
    return _normalise([{"name": s.name, "command": s.command, "inputs": s.inputs}
                       for s in stages], tmp_path)


if __name__ == "__main__":  # writes GOLDEN: only ever from the code before the seen split (see the docstring)
    import tempfile

    plans = {}
    for split in ("test", "validation"):
        for methods in (None, "base,t2l"):
            with tempfile.TemporaryDirectory() as tmp:
                plans[f"{split}/{methods or 'default'}"] = v2_plan(Path(tmp).resolve(), split, methods)
    GOLDEN.write_text(json.dumps(plans, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
