"""Run directories: unique atomic creation, atomic writes, and recognising a run."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from seqtrain.errors import RunDirError
from seqtrain.rundir import (
    RunDir,
    atomic_write_json,
    atomic_write_text,
    create_run_dir,
    open_run_dir,
    read_json,
)


def test_generated_names_are_unique_even_within_one_second(tmp_path: Path):
    runs = [create_run_dir("exp", runs_dir=tmp_path) for _ in range(20)]
    assert len({run.path for run in runs}) == 20
    assert all(run.path.is_dir() and not any(run.path.iterdir()) for run in runs)


def test_an_exact_path_is_created_with_its_parents_but_never_reused(tmp_path: Path):
    run = create_run_dir("exp", exact=tmp_path / "a" / "b")
    assert run.path.is_dir()
    with pytest.raises(RunDirError, match="already exists"):
        create_run_dir("exp", exact=tmp_path / "a" / "b")


def test_an_unwritable_runs_folder_is_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunDirError, match="cannot create"):
        create_run_dir("exp", runs_dir=blocker / "runs")


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path: Path):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"status": "running"})
    atomic_write_json(target, {"status": "completed", "loss": float("nan")})
    assert json.loads(target.read_text()) == {"status": "completed", "loss": None}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    mode = stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file(tmp_path: Path):
    target = tmp_path / "config.yaml"
    atomic_write_text(target, "old")

    class Unprintable:
        def __repr__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        atomic_write_json(target, {"x": Unprintable()})
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_open_run_dir_recognises_runs_and_names_what_is_wrong(tmp_path: Path):
    with pytest.raises(RunDirError, match="does not exist"):
        open_run_dir(tmp_path / "missing")
    with pytest.raises(RunDirError, match="not a seqtrain run directory"):
        open_run_dir(tmp_path)
    (tmp_path / "config.yaml").write_text("name: x\n")
    assert open_run_dir(tmp_path) == RunDir(tmp_path)


def test_read_json_reports_damage(tmp_path: Path):
    (tmp_path / "summary.json").write_text("{truncated")
    with pytest.raises(RunDirError, match="not valid JSON"):
        read_json(tmp_path / "summary.json")
