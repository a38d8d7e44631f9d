"""Interrupt, kill and resume real training processes; the result must be the same run.

Each scenario stops a run at a chosen moment (a real signal once an epoch has been logged,
or a SIGKILL injected at an exact write), resumes it with `seqtrain resume`, and compares
the final weights bit for bit, and `metrics.csv` row for row, with an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, TINY, invoke, write_config

# Dropout, shuffling, several batches per epoch and a step per execution, so that every
# piece of state that shapes the result is exercised: seeds, order, optimizer, metrics.
CONFIG = {**TINY, "model": {"cell": "lstm", "units": 8, "dropout": 0.2},
          "train": {"epochs": 4, "batch_size": 32, "steps_per_execution": 1,
                    "backup_every_steps": 2}}


def start(config: Path, run_dir: Path, *args: str, fault: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SEQTRAIN_FAULT", None)
    if fault:
        env["SEQTRAIN_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "seqtrain", "run", str(config), "--run-dir",
                             str(run_dir), *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [{k: v for k, v in row.items() if k != "epoch_seconds"}
                for row in csv.DictReader(file)]


def weights(run_dir: Path) -> list[np.ndarray]:
    import keras

    model = keras.saving.load_model(run_dir / "checkpoints" / "last.keras", safe_mode=True)
    return [np.asarray(w) for w in model.get_weights()]


def assert_same_run(resumed: Path, reference: Path) -> None:
    assert metrics(resumed) == metrics(reference)  # one row per epoch, same numbers
    for got, want in zip(weights(resumed), weights(reference), strict=True):
        assert got.tobytes() == want.tobytes()  # bit for bit
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_run"] == len(metrics(reference))
    assert not [p for p in resumed.rglob(".*") if "tmp" in p.name]  # no temporaries left
    assert summary["test"] == json.loads((reference / "summary.json").read_text())["test"]


# Longer epochs and no backups: a signal sent after epoch 1 lands inside epoch 2.
LONG_EPOCHS = {**CONFIG, "data": {**CONFIG["data"], "num_samples": 3000},
        "train": {**CONFIG["train"], "epochs": 3, "backup_every_steps": None}}


def _reference(config: Path, folder: Path) -> Path:
    """The same experiment, trained in one go."""
    code, _, err = finish(start(config, folder / "run"))
    assert code == 0, err
    return folder / "run"


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("resume"), CONFIG)


@pytest.fixture(scope="module")
def reference(config: Path, tmp_path_factory) -> Path:
    return _reference(config, tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def long_config(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("long"), LONG_EPOCHS)


@pytest.fixture(scope="module")
def long_reference(long_config: Path, tmp_path_factory) -> Path:
    return _reference(long_config, tmp_path_factory.mktemp("long-reference"))


def resume(run_dir: Path, *args: str):
    return invoke("resume", run_dir, "--quiet", *args)


@pytest.mark.parametrize("fault,stopped_at", [
    ("kill:resume.json:5", "committing a mid-epoch state: resumes from the one before"),
    ("kill:last.keras:1", "right after epoch 1's state"),
    # More windows, in the slow set (CI runs it too):
    pytest.param("kill:metrics.csv:2", "logging epoch 2, before its state",
                 marks=pytest.mark.slow),
    pytest.param("kill:best.keras:2", "saving the best model of epoch 2",
                 marks=pytest.mark.slow),
    pytest.param("kill:state-e0002-s000000:1", "writing epoch 2's state model",
                 marks=pytest.mark.slow),
])
def test_sigkill_at_any_write_then_resume_gives_the_uninterrupted_result(
        fault, stopped_at, config, reference, tmp_path):
    run_dir = tmp_path / "run"
    code, _, _ = finish(start(config, run_dir, fault=fault))
    assert code == -signal.SIGKILL, stopped_at
    result = resume(run_dir)
    assert result.exit_code == 0, result.stderr
    assert_same_run(run_dir, reference)


def wait_for_epoch(run_dir: Path, proc: subprocess.Popen) -> None:
    """Block until the run has logged an epoch: real progress, not a clock."""
    deadline = time.monotonic() + 300
    while not (run_dir / "metrics.csv").exists() or not metrics(run_dir):
        assert proc.poll() is None, finish(proc)
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize("signum,code", [
    (signal.SIGINT, 130),
    pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow),  # the same path, in CI
])
def test_a_signal_stops_at_a_batch_saves_state_and_resume_finishes_it(
        signum, code, long_config, long_reference, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(long_config, run_dir)
    wait_for_epoch(run_dir, proc)
    proc.send_signal(signum)
    returncode, out, err = finish(proc)
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary["status"] == "completed":
        pytest.skip("the run finished before the signal arrived")  # a very fast machine
    assert returncode == code, err
    assert summary["status"] == "interrupted"
    assert summary["signal"] == signal.Signals(signum).name
    assert f"seqtrain resume {run_dir}" in err and out.strip() == str(run_dir)
    assert len(metrics(run_dir)) == summary["epochs_run"]
    result = resume(run_dir)
    assert result.exit_code == 0, result.stderr
    assert_same_run(run_dir, long_reference)
    assert len(json.loads((run_dir / "summary.json").read_text())["resumes"]) == 1
    assert len(json.loads((run_dir / "env.json").read_text())["resumes"]) == 1


@pytest.mark.slow
def test_a_second_ctrl_c_aborts_at_once_and_the_run_still_resumes_exactly(
        long_config, long_reference, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(long_config, run_dir)
    wait_for_epoch(run_dir, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    returncode, _, err = finish(proc)
    if json.loads((run_dir / "summary.json").read_text())["status"] == "completed":
        pytest.skip("the run finished before the signals arrived")
    assert returncode == 130, err
    assert "Traceback" not in err
    result = resume(run_dir)
    assert result.exit_code == 0, result.stderr
    assert_same_run(run_dir, long_reference)


@pytest.mark.slow
def test_extending_a_completed_run_equals_training_longer_in_one_go(config, reference,
                                                                     tmp_path):
    run_dir = tmp_path / "run"
    code, _, err = finish(start(config, run_dir, "--set", "train.epochs=2"))
    assert code == 0, err
    again = resume(run_dir)
    assert again.exit_code == 0 and "completed its 2 epochs already" in again.stderr
    result = resume(run_dir, "--set", "train.epochs=4")
    assert result.exit_code == 0, result.stderr
    assert_same_run(run_dir, reference)
    assert "train.epochs=4" in (run_dir / "overrides.txt").read_text()
    assert "epochs: 4" in (run_dir / "config.yaml").read_text()


def test_resume_refuses_changes_other_than_epochs(config, reference, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    files = lambda: {p: p.read_bytes() for p in copy.rglob("*")  # noqa: E731
                     if p.is_file() and p.name != "run.lock"}
    before = files()
    result = resume(copy, "--set", "model.units=16")
    assert result.exit_code == 2 and "only --set train.epochs=N" in result.stderr
    result = resume(copy, "--set", "train.epochs=2")
    assert result.exit_code == 2 and "trained 4 epochs already" in result.stderr
    assert files() == before


def test_resume_of_a_run_being_trained_names_the_process(config, tmp_path):
    run_dir = tmp_path / "run"
    slow = write_config(tmp_path, {**CONFIG, "train": {**CONFIG["train"], "epochs": 100000}})
    proc = start(slow, run_dir)
    try:
        wait_for_epoch(run_dir, proc)
        result = resume(run_dir)
        assert result.exit_code == 2
        assert f"being trained by pid {proc.pid}" in result.stderr
    finally:
        proc.kill()
        finish(proc)


def test_two_runs_racing_for_one_run_dir_one_trains_the_other_exits_2(config, tmp_path):
    run_dir = tmp_path / "contested"
    procs = [start(config, run_dir, "--set", "train.epochs=1") for _ in range(2)]
    results = sorted(finish(proc)[0] for proc in procs)
    assert results == [0, 2]


def test_a_full_disk_fails_the_run_with_exit_1_and_keeps_the_last_state(config, tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = finish(start(config, run_dir, fault="enospc:state-e0003-s000000:1"))
    assert code == 1, err
    assert "cannot write" in err and "No space left on device" in err
    assert "Traceback" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left" in summary["error"]
    state = json.loads((run_dir / "checkpoints" / "resume.json").read_text())
    assert (state["epoch"], state["step"]) == (2, 4)  # the last complete one
    assert (run_dir / "checkpoints" / state["model_file"]).is_file()


def test_a_diverged_run_is_not_resumed(config, tmp_path):
    run_dir = tmp_path / "run"
    result = invoke("run", config, "--run-dir", run_dir, "--quiet", "--set",
                    "train.optimizer=sgd", "--set", "train.learning_rate=1e38")
    assert result.exit_code == 1
    result = resume(run_dir)
    assert result.exit_code == 2 and "diverged" in result.stderr


@pytest.mark.slow  # two runs of up to 30 epochs; CI runs the slow set too
def test_early_stopping_and_plateau_counters_survive_a_kill(tmp_path):
    config = write_config(tmp_path, {
        **CONFIG, "data": {"task": "parity", "sequence_length": 5, "num_samples": 600},
        "model": {"cell": "gru", "units": 8, "dropout": 0.1},
        "train": {"epochs": 30, "batch_size": 32, "learning_rate": 0.02,
                  "monitor": "val_accuracy", "early_stopping": {"patience": 2},
                  "lr_schedule": "reduce_on_plateau", "plateau_patience": 1}})
    reference = _reference(config, tmp_path / "one-go")
    stopped_at = json.loads((reference / "summary.json").read_text())["stopped_early"]
    assert 3 < stopped_at < 30  # it did stop early, after a plateau or two
    run_dir = tmp_path / "run"
    code, _, _ = finish(start(config, run_dir, fault=f"kill:last.keras:{stopped_at - 2}"))
    assert code == -signal.SIGKILL
    result = resume(run_dir)
    assert result.exit_code == 0, result.stderr
    assert_same_run(run_dir, reference)
    assert json.loads((run_dir / "summary.json").read_text())["stopped_early"] == stopped_at
    again = resume(run_dir)
    assert again.exit_code == 0 and f"stopped early at epoch {stopped_at}" in again.stderr
