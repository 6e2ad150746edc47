"""scripts/publish_run.py: a run's records (not its checkpoints) copied into the repository, with a loss plot."""

from __future__ import annotations

import json

import pytest

from tests.scripts import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/publish_run.py")


def test_records_and_plot_travel_checkpoints_do_not(tmp_path, script, capsys):
    run = tmp_path / "run"
    (run / "ckpt-0000010").mkdir(parents=True)
    (run / "ckpt-0000010" / "hypernet.safetensors").write_bytes(b"weights")
    rows = [{"step": 0, "gen_score": 0.05, "gen_copy_rate": 0.0, "val_heldout": 3.7},
            {"step": 10, "loss": 3.1, "ce": 3.1}, {"step": 20, "loss": 2.5, "ce": 2.5},
            {"step": 20, "gen_score": 0.12, "gen_copy_rate": 0.25, "val_heldout": 2.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3')  # a cut line
    (run / "gen_val.jsonl").write_text('{"step": 0, "model": "t2l", "score": 0.05}\n')
    dest = tmp_path / "docs" / "run"
    assert script.main([str(run), str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["gen_val.jsonl", "loss.png", "metrics.jsonl"]  # no per-task rows: no table
    assert (dest / "metrics.jsonl").read_text() == (run / "metrics.jsonl").read_text()
    assert (dest / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "last step 20" in out and '"gen_score": 0.12' in out and '"gen_copy_rate": 0.25' in out
    before = (dest / "metrics.jsonl").read_bytes()
    assert script.main([str(dest), str(dest)]) == 0  # published records redrawn in place
    assert (dest / "metrics.jsonl").read_bytes() == before and (dest / "loss.png").is_file()


def test_a_directory_without_metrics_is_a_one_line_error(tmp_path, script, capsys):
    assert script.main([str(tmp_path), str(tmp_path / "dest")]) == 2
    assert "has no metrics.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "dest").exists()


def test_generation_scores_get_a_panel_of_their_own(tmp_path):
    """With gen_* rows the plot has a second panel below the losses (a taller image), not a second axis over them."""
    import struct

    from text2lora.train.metrics_log import plot_curves

    def height(rows, name):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        png = plot_curves(d).read_bytes()
        return struct.unpack(">II", png[16:24])[1]  # IHDR: width, height

    losses = [{"step": s, "loss": 3.0 - s / 100} for s in range(0, 40, 10)] + [{"step": 30, "val_heldout": 2.0}]
    gen = [{"step": 0, "gen_score": 0.05, "gen_copy_rate": 0.1, "gen_error": "x"},
           {"step": 30, "gen_score": 0.12, "gen_copy_rate": 0.2}]
    assert height(losses + gen, "with") > 1.4 * height(losses, "without")


def test_per_task_table_counts_right_answers_and_leaves_silent_tasks_out(tmp_path, script):
    def row(step, model, scores):
        return json.dumps({"step": step, "model": model, "score": 0.0,
                           "tasks": {t: {"n": 8, "score": v / 8} for t, v in scores.items()}}) + "\n"

    gen = tmp_path / "gen_val.jsonl"
    gen.write_text(row(0, "base", {"a": 2, "b": 0}) + row(0, "t2l", {"a": 3, "b": 0}) + row(0, "t2l+shots", {"a": 5, "b": 0})
                   + row(250, "t2l", {"a": 4, "b": 0}) + row(250, "t2l+shots", {"a": 6, "b": 0}) + '{"step": 500, "mo')
    table = script.per_task_table(gen).splitlines()
    assert table[4] == "| task | n | model | 0 | 250 |"
    assert table[6:9] == ["| a | 8 | base | 2 |  |", "| a | 8 | t2l | 3 | 4 |", "| a | 8 | t2l+shots | 5 | 6 |"]
    assert table[-1] == "1 of 2 tasks: no right answer from any model at any step."
    assert not any(line.startswith("| b ") for line in table)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"step": 0, "model": "base", "tasks": {"a": {"n": 8, "score": 0.25}}}\n')
    assert script.per_task_table(empty) == ""  # nothing trained yet: no table
