"""Crash-safe writes: whole files or nothing, even when the process dies mid-write."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from seqtrain import atomic
from seqtrain.errors import StorageError
from tests.conftest import ROOT


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path: Path):
    target = tmp_path / "summary.json"
    atomic.write_json(target, {"status": "running"})
    atomic.write_json(target, {"status": "completed", "loss": float("nan")})
    assert json.loads(target.read_text()) == {"status": "completed", "loss": None}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    mode = stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file(tmp_path: Path):
    target = tmp_path / "config.yaml"
    atomic.write_text(target, "old")

    class Unprintable:
        def __repr__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        atomic.write_json(target, {"x": Unprintable()})
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_a_kill_just_before_the_rename_leaves_the_old_file_whole(tmp_path: Path):
    target = tmp_path / "summary.json"
    atomic.write_json(target, {"version": 1})
    script = ("from pathlib import Path; from seqtrain import atomic; "
              f"atomic.write_json(Path({str(target)!r}), {{'version': 2}})")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SEQTRAIN_FAULT": "kill:summary:1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert result.returncode == -9  # SIGKILL, at the worst moment
    assert target.read_text() == '{\n  "version": 1\n}\n'


def test_a_full_disk_is_a_storage_error_naming_the_file(tmp_path: Path):
    target = tmp_path / "metrics.csv"
    atomic.write_text(target, "old")
    script = ("import resource; from pathlib import Path; from seqtrain import atomic; "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000)); "
              f"atomic.write_text(Path({str(target)!r}), 'x' * 5000)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1
    assert "StorageError: cannot write" in result.stderr and "metrics.csv" in result.stderr
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_link_makes_a_second_complete_name(tmp_path: Path):
    source = tmp_path / "state.keras"
    source.write_bytes(b"model")
    atomic.link(source, tmp_path / "last.keras")
    assert (tmp_path / "last.keras").read_bytes() == b"model"
    with pytest.raises(StorageError):
        atomic.link(tmp_path / "missing", tmp_path / "other")
