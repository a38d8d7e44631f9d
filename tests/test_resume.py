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

from seqtrain.report import describe_point
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

    import seqtrain.layers  # noqa: F401  (a model with attention holds seqtrain's layers)

    model = keras.saving.load_model(run_dir / "checkpoints" / "last.keras", safe_mode=True)
    return [np.asarray(w) for w in model.get_weights()]


def assert_same_run(resumed: Path, reference: Path) -> None:
    assert metrics(resumed) == metrics(reference)  # one row per epoch, same numbers
    # The gradient probe: the same sequences every epoch and session, no gap, no repeat.
    flow = (resumed / "gradient_flow.csv").read_text()
    assert flow == (reference / "gradient_flow.csv").read_text()
    epochs = [int(line.split(",")[0]) for line in flow.splitlines()[1:]]
    steps = epochs.count(1)
    assert steps and epochs == [e for e in range(1, len(metrics(reference)) + 1)
                                for _ in range(steps)]
    probes = [json.loads((run / "summary.json").read_text())["gradient_flow"]["probe"]
              for run in (resumed, reference)]
    assert probes[0]["indices"] == probes[1]["indices"]
    for got, want in zip(weights(resumed), weights(reference), strict=True):
        assert got.tobytes() == want.tobytes()  # bit for bit
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_run"] == len(metrics(reference))
    assert not list(resumed.rglob(".*"))  # no temporary file of a killed write is left
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


def kill_then_resume(config: Path, run_dir: Path, fault: str, reference: Path) -> None:
    """SIGKILL a run at `fault`, resume it: it must end as `reference` did in one go."""
    code, _, _ = finish(start(config, run_dir, fault=fault))
    assert code == -signal.SIGKILL, fault
    result = resume(run_dir)
    assert result.exit_code == 0, result.stderr
    assert_same_run(run_dir, reference)


@pytest.mark.parametrize("fault,stopped_at", [
    ("kill:resume.json:5", "committing a mid-epoch state: resumes from the one before"),
    ("kill:gradient_flow.csv:2", "writing epoch 2's gradient flow, before its metrics"),
    # More windows, in the slow set (CI runs it too):
    pytest.param("kill:best.keras:2", "saving the best model of epoch 2 (Keras's own .keras "
                 "file)", marks=pytest.mark.slow),
    pytest.param("kill:last.keras:1", "right after epoch 1's state", marks=pytest.mark.slow),
    pytest.param("kill:metrics.csv:2", "logging epoch 2, before its state",
                 marks=pytest.mark.slow),
    pytest.param("kill:state-e0002-s000000:1", "writing epoch 2's state model",
                 marks=pytest.mark.slow),
])
def test_sigkill_at_any_write_then_resume_gives_the_uninterrupted_result(
        fault, stopped_at, config, reference, tmp_path):
    run_dir = tmp_path / "run"
    code, _, _ = finish(start(config, run_dir, fault=fault))
    assert code == -signal.SIGKILL, stopped_at
    assert list(run_dir.rglob(".tmp-*")), "the killed write left its temporary file"
    # summary.json kept up with the saved states: `ls` shows the epochs on disk
    saved = json.loads((run_dir / "checkpoints" / "resume.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resume_point"] == {"epoch": saved["epoch"], "step": saved["step"]}
    assert summary["epochs_run"] == saved["epoch"] > 0 and summary["best_epoch"]
    listed = invoke("ls", run_dir, "--format", "json")
    row = json.loads(listed.stdout)[0]
    assert row["status"] == "killed" and row["epochs"] == f"{saved['epoch']}/4", row
    assert row["best_val_loss"] == summary["best"]["val_loss"]
    result = resume(run_dir)
    assert result.exit_code == 0, result.stderr
    assert_same_run(run_dir, reference)


@pytest.mark.slow  # two runs; CI runs the slow set too
def test_a_run_with_attention_killed_mid_epoch_resumes_bit_identical(tmp_path):
    attention = {**CONFIG, "model": {**CONFIG["model"], "attention": "additive"},
                 "data": {**CONFIG["data"], "mode": "recall"}}
    config = write_config(tmp_path, attention, name="attention.yaml")
    reference = _reference(config, tmp_path / "reference")
    kill_then_resume(config, tmp_path / "run", "kill:resume.json:5", reference)


@pytest.mark.parametrize("fault", [
    "kill:config.yaml:1",  # the folder exists, nothing in it yet: `run` may start over
    "kill:summary.json:1",  # config and data statistics written, no summary
])
def test_a_run_killed_while_being_set_up_is_resumed_from_the_start(fault, config, reference,
                                                                    tmp_path):
    run_dir = tmp_path / "run"
    code, _, _ = finish(start(config, run_dir, fault=fault))
    assert code == -signal.SIGKILL and run_dir.is_dir()
    if not (run_dir / "config.yaml").exists():
        return  # what `seqtrain sweep` retries: test_sweep covers it
    listed = json.loads(invoke("ls", run_dir, "--format", "json").stdout)[0]
    assert listed["status"] == "killed", listed
    result = invoke("resume", run_dir)
    assert result.exit_code == 0, result.stderr
    assert "from the start" in result.stderr
    assert_same_run(run_dir, reference)


def test_a_signal_while_the_run_is_set_up_stops_it_resumably(config, reference, tmp_path):
    # What a sweep's forwarded SIGTERM does when it lands between the folder's creation and
    # its summary: the set-up ends, nothing trains, and the run resumes.
    run_dir = tmp_path / "run"
    code, _, err = finish(start(config, run_dir, fault="term:config.yaml:1"))
    assert code == 143, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    assert f"seqtrain resume {run_dir}" in err and "nothing saved yet" in err
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
    point = summary["resume_point"]
    assert point["epoch"] == 1  # in epoch 2, or at its very start
    result = invoke("resume", run_dir)
    assert result.exit_code == 0, result.stderr
    # where it goes on from, and the epochs counted out of the run's, not this session's
    where = describe_point(point["epoch"], point["step"])
    assert f"resuming {run_dir} {where}, of 3 epochs" in result.stderr
    assert "epoch 2/3" in result.stderr and "epoch 3/3" in result.stderr
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


@pytest.mark.slow  # two processes racing
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
    kill_then_resume(config, run_dir, f"kill:last.keras:{stopped_at - 2}", reference)
    assert json.loads((run_dir / "summary.json").read_text())["stopped_early"] == stopped_at
    again = resume(run_dir)
    assert again.exit_code == 0 and f"stopped early at epoch {stopped_at}" in again.stderr


PLATEAU = {**CONFIG, "train": {**CONFIG["train"], "backup_every_steps": None,
                               "monitor": "val_loss", "lr_schedule": "reduce_on_plateau",
                               "plateau_patience": 1}}


@pytest.mark.parametrize("learning_rate,epochs,killed_after", [
    # val_loss improves by less than Keras's default min_delta every epoch: best.keras and
    # the plateau once disagreed about epoch 2, which was best and also cut the rate
    pytest.param(3e-5, 4, 2, marks=pytest.mark.slow),  # two runs of four epochs
    # a real plateau: epoch 3 is worse than epoch 2 and the rate is cut after it
    pytest.param(0.5, 6, 3, marks=pytest.mark.slow),
])
def test_a_plateau_run_resumes_exactly_around_its_rate_cuts(learning_rate, epochs,
                                                             killed_after, tmp_path):
    config = write_config(tmp_path, {**PLATEAU, "train": {
        **PLATEAU["train"], "learning_rate": learning_rate, "epochs": epochs}})
    reference = _reference(config, tmp_path / "one-go")
    rows = metrics(reference)
    losses = [float(row["val_loss"]) for row in rows]
    rates = [float(row["learning_rate"]) for row in rows]  # the rate each epoch trained at
    for epoch in range(1, len(rows)):  # 0-based: the rate was cut after `epoch - 1`
        if rates[epoch] < rates[epoch - 1]:
            assert losses[epoch - 1] >= min(losses[:epoch - 1]), "a best epoch cut the rate"
    if learning_rate == 0.5:
        assert rates[-1] < rates[0]  # the plateau did cut
    kill_then_resume(config, tmp_path / "run", f"kill:last.keras:{killed_after}", reference)


@pytest.mark.slow  # two runs of a larger model; CI runs the slow set too
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_a_run_resumed_on_fewer_cores_computes_as_it_started(tmp_path):
    # On 2 cores `auto` splits this batch in 2 streams, one thread per operation; on 1 core
    # it would not. Resumed on 1 core, the run keeps what it resolved: the same numbers.
    config = write_config(tmp_path, {**CONFIG, "model": {"cell": "lstm", "units": 64},
                                     "data": {**CONFIG["data"], "num_samples": 1200},
                                     "train": {**CONFIG["train"], "batch_size": 128,
                                               "epochs": 2}})
    reference = _reference(config, tmp_path / "one-go")
    settings = json.loads((reference / "summary.json").read_text())["speed_settings"]
    assert (settings["streams"], settings["intra_op_threads"]) == (2, 1)
    run_dir = tmp_path / "run"
    code, _, _ = finish(start(config, run_dir, fault="kill:resume.json:3"))
    assert code == -signal.SIGKILL
    one_core = subprocess.run(
        [sys.executable, "-m", "seqtrain", "resume", str(run_dir), "--quiet"], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert one_core.returncode == 0, one_core.stderr
    assert json.loads((run_dir / "env.json").read_text())["resumes"][0]["threads"][
        "intra_op"] == 1
    assert_same_run(run_dir, reference)
