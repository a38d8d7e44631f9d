"""Run directories: unique atomic creation, atomic writes, and recognising a run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqtrain.errors import RunDirError
from seqtrain.rundir import RunDir, RunLock, create_run_dir, open_run_dir, read_json
from tests.conftest import ROOT


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


def lock_in_another_process(folder: Path) -> subprocess.Popen:
    """A process that takes the run lock, says so, and holds it until its stdin closes."""
    script = ("import sys\nfrom pathlib import Path\nfrom seqtrain.rundir import RunDir, RunLock\n"
              f"with RunLock(RunDir(Path({str(folder)!r}))):\n"
              "    print('locked', flush=True)\n    sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_process_cannot_lock_a_run_being_trained(tmp_path: Path):
    holder = lock_in_another_process(tmp_path)
    with pytest.raises(RunDirError, match=f"being trained by pid {holder.pid} on "):
        with RunLock(RunDir(tmp_path)):
            pass
    holder.stdin.close()
    holder.wait(timeout=60)
    with RunLock(RunDir(tmp_path)):  # released when its holder let go
        pass


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path: Path):
    holder = lock_in_another_process(tmp_path)
    holder.kill()
    holder.wait(timeout=60)
    run = RunDir(tmp_path)
    assert "pid" in run.lock.read_text()  # the file stays, the lock does not
    with RunLock(run):
        assert run.lock.read_text().startswith(f"pid {os.getpid()} ")
