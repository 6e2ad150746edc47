"""scripts/rebuild_shortrun_library.py: a library copy that carries exactly a snapshot's descriptions (the short
runs' frozen library, docs/quality/v2-recipe/PLAN.md third amendment), leaving the source library untouched."""

from __future__ import annotations

import json

import pytest

import text2lora.data.library as library
from tests.scripts import load_script
from tests.tiny import build_library
from text2lora.data.library import SHIPPED_DIR, TaskLibrary, library_fingerprint


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/rebuild_shortrun_library.py")


def test_the_copy_has_the_snapshots_descriptions_only(tmp_path, script, capsys):
    shipped = SHIPPED_DIR
    source = build_library(tmp_path / "lib")
    (source / "descriptions").mkdir()  # a describe cache in the source must not reach the copy
    (source / "descriptions" / "upper.json").write_text(json.dumps({"descriptions": ["cached, not in the snapshot"]}))
    before = (source / "index.json").read_bytes()
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "unknown.json").write_text(json.dumps({"format": 1, "written_by": {"seed": 0}, "tasks": {
        "reverse": {"descriptions": ["Reverse the word.", "Spell it from the end."], "heldout_descriptions": ["Mirror it."]}}}))

    assert script.main([str(source), str(tmp_path / "copy"), str(snap)]) == 0
    assert "tasks with generated descriptions: 1" in capsys.readouterr().out
    assert library.SHIPPED_DIR == shipped  # the snapshot is passed in, the module's folder is untouched
    tasks = {t.name: t for t in TaskLibrary.load(tmp_path / "copy").tasks}
    assert tasks["reverse"].descriptions == ["Write the input word backwards.", "Reverse the word.", "Spell it from the end."]
    assert tasks["reverse"].heldout_descriptions == ["Mirror it."]
    for name in ("upper", "first"):  # reset to their own description: neither the fixture's extras nor the cache
        assert tasks[name].descriptions == tasks[name].descriptions[:1] and tasks[name].heldout_descriptions == []
    assert not (tmp_path / "copy" / "descriptions").exists()
    assert (source / "index.json").read_bytes() == before
    assert library_fingerprint(tmp_path / "copy", with_descriptions=False) == library_fingerprint(
        source, with_descriptions=False)


def test_bad_paths_are_one_line_errors(tmp_path, script, capsys):
    assert script.main([str(tmp_path / "nothing"), str(tmp_path / "copy"), str(tmp_path)]) == 2
    assert "no library index" in capsys.readouterr().err
    source = build_library(tmp_path / "lib")
    assert script.main([str(source), str(tmp_path / "copy"), str(tmp_path / "empty")]) == 2
    assert "no description files" in capsys.readouterr().err
    assert not (tmp_path / "copy").exists()
