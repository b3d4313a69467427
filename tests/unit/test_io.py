"""Artifact writers: atomic (a failed write leaves the old file or nothing), and readable back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from layerprune.io import atomic_path, read_json, write_bytes, write_csv, write_json, write_text, write_with


def test_atomic_path_renames_on_success_and_keeps_the_suffix(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "dir" / "table.csv"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".csv" and tmp != target
        assert not target.exists()  # nothing visible under the real name while writing
        tmp.write_text("a\n1\n")
    assert target.read_text() == "a\n1\n"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]
    with atomic_path(tmp_path / "plot.png", suffix=".pdf") as tmp:
        assert tmp.suffix == ".pdf"
        tmp.write_bytes(b"x")


@pytest.mark.parametrize("error", [RuntimeError("writer crashed"), KeyboardInterrupt()])
def test_atomic_path_failure_leaves_old_content_and_no_temp_file(tmp_path: Path, error: BaseException) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(type(error)), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise error
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]

    fresh = tmp_path / "new.json"
    with pytest.raises(RuntimeError), atomic_path(fresh) as tmp:
        tmp.write_text("{")
        raise RuntimeError("writer crashed")
    assert not fresh.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_json_round_trip_with_numpy_and_paths(tmp_path: Path) -> None:
    obj = {"top1": np.float32(0.5), "n": np.int64(360), "blocks": np.array([3, 1, 2]), "model": Path("a/b.pt")}
    path = write_json(tmp_path / "m.json", obj)
    assert read_json(path) == {"top1": 0.5, "n": 360, "blocks": [3, 1, 2], "model": "a/b.pt"}
    assert path.read_text().endswith("}\n")


def test_write_json_refuses_unknown_objects_without_leaving_a_file(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot write object to JSON"):
        write_json(tmp_path / "m.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_read_json_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run the workflow stage"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"top1": 0.9')
    with pytest.raises(ValueError, match="not valid JSON.*rerun"):
        read_json(bad)


def test_csv_and_text_round_trip(tmp_path: Path) -> None:
    frame = pd.DataFrame({"unit": ["layer1.1", "layer2.2"], "score": [0.25, 0.5], "removed": [True, False]})
    path = write_csv(tmp_path / "scores.csv", frame)
    pd.testing.assert_frame_equal(pd.read_csv(path), frame)
    assert path.read_text().splitlines()[0] == "unit,score,removed"  # no index column
    text = write_text(tmp_path / "t.md", "| a |\n")
    assert text.read_text() == "| a |\n"
    assert json.loads(write_json(tmp_path / "l.json", [1, 2]).read_text()) == [1, 2]


def test_write_with_hands_the_callback_a_temporary_path_and_fsyncs_on_request(tmp_path: Path, monkeypatch) -> None:
    """The one atomic writer serves any format through a callback (torch.save, savefig): the callback writes a
    temporary file beside the target, never the target; with fsync=True the bytes are synced before the rename."""
    import os

    import torch

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    target = tmp_path / "state" / "last.pt"
    seen: list[Path] = []
    write_with(target, lambda tmp: seen.append(tmp) or torch.save({"step": 3}, tmp), fsync=True)
    assert seen[0] != target and seen[0].parent == target.parent and not seen[0].exists()
    assert torch.load(target) == {"step": 3} and len(synced) == 1
    write_bytes(tmp_path / "raw.bin", b"\x00\x01")
    assert (tmp_path / "raw.bin").read_bytes() == b"\x00\x01" and len(synced) == 1  # no fsync unless asked
    with pytest.raises(RuntimeError):
        write_with(target, lambda tmp: (_ for _ in ()).throw(RuntimeError("crash")))
    assert torch.load(target) == {"step": 3} and sorted(p.name for p in target.parent.iterdir()) == ["last.pt"]
