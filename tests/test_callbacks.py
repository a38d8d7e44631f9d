"""The callbacks that keep a run's files: best checkpoint, metrics log, resumable state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seqtrain import runtime
from seqtrain.config import ModelConfig, TrainConfig
from seqtrain.data import TaskSpec
from seqtrain.rundir import RunDir
from tests.conftest import TINY, invoke, write_config

NAN = float("nan")


@pytest.fixture
def model():
    runtime.select_device("cpu")
    from seqtrain.models import build_model, compile_model

    spec = TaskSpec(timesteps=3, features=2, num_classes=2, per_step=True)
    model = build_model(ModelConfig(units=4), spec)
    compile_model(model, TrainConfig(), spec)
    return model


def best_checkpoint(run: RunDir, model, mode="min"):
    from seqtrain.callbacks import BestCheckpoint

    callback = BestCheckpoint(run, monitor="val_loss", mode=mode)
    callback.set_model(model)
    return callback


def test_a_nan_first_epoch_does_not_stop_later_epochs_from_being_best(model, tmp_path):
    run = RunDir(tmp_path)
    callback = best_checkpoint(run, model)
    callback.on_epoch_end(0, {"val_loss": NAN})
    assert not run.checkpoint("best").exists() and callback.best is None
    callback.on_epoch_end(1, {"val_loss": 0.9})
    assert run.checkpoint("best").is_file() and callback.best_epoch == 2
    first = run.checkpoint("best").stat().st_mtime_ns
    callback.on_epoch_end(2, {"val_loss": float("inf")})
    callback.on_epoch_end(3, {"val_loss": 0.95})
    assert callback.best_epoch == 2 and run.checkpoint("best").stat().st_mtime_ns == first
    callback.on_epoch_end(4, {"val_loss": 0.5})
    assert callback.best == 0.5 and callback.best_epoch == 5


def test_mode_is_explicit_and_a_missing_metric_is_an_error(model, tmp_path):
    with pytest.raises(ValueError, match="mode must be"):
        best_checkpoint(RunDir(tmp_path), model, mode="auto")
    with pytest.raises(KeyError, match="val_loss"):
        best_checkpoint(RunDir(tmp_path), model).on_epoch_end(0, {"loss": 1.0})


def test_max_mode_keeps_the_highest(model, tmp_path):
    callback = best_checkpoint(RunDir(tmp_path), model, mode="max")
    for epoch, value in enumerate([0.1, 0.3, 0.2]):
        callback.on_epoch_end(epoch, {"val_loss": value})
    assert callback.best_epoch == 2


def test_checkpoint_every_spaces_the_resumable_states(tmp_path):
    config = write_config(tmp_path, {**TINY, "train": {"epochs": 5, "batch_size": 32,
                                                       "checkpoint_every": 2}})
    run_dir = tmp_path / "run"
    result = invoke("run", config, "--run-dir", run_dir, "--quiet",
                    "--set", "train.checkpoint_every=2")
    assert result.exit_code == 0, result.stderr
    state = json.loads((run_dir / "checkpoints" / "resume.json").read_text())
    assert (state["epoch"], state["step"]) == (5, 0)  # the last epoch always saves
    assert [p.name for p in (run_dir / "checkpoints").glob("state-*")] == [
        "state-e0005-s000000.keras"]


def test_an_epoch_that_sets_a_new_best_copies_it_into_its_state(tmp_path):
    run_dir = tmp_path / "run"
    assert invoke("run", write_config(tmp_path), "--run-dir", run_dir, "--quiet").exit_code == 0
    assert json.loads((run_dir / "summary.json").read_text())["best_epoch"] == 2
    best, state = run_dir / "checkpoints" / "best.keras", run_dir / "checkpoints" / (
        json.loads((run_dir / "checkpoints" / "resume.json").read_text())["model_file"])
    assert state.read_bytes() == best.read_bytes()
    assert not state.samefile(best)  # a copy: damage to one does not reach the other


def test_metrics_rows_beyond_the_state_are_dropped_on_resume(tmp_path: Path):
    from seqtrain.callbacks import EpochLog

    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,epoch_seconds\n"
                    "1,1.0,0.5,1.1,0.4,0.001,1.0\n2,0.9,0.6,1.0,0.5,0.001,1.0\n")
    rows = EpochLog.read(path, epochs=1)
    assert rows == [{"epoch": 1.0, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1,
                     "val_accuracy": 0.4, "learning_rate": 0.001, "epoch_seconds": 1.0}]
    log = EpochLog(path, rows)
    log.write()
    assert path.read_text().splitlines()[1:] == ["1,1.0,0.5,1.1,0.4,0.001,1.0"]
    EpochLog(path, []).write()
    assert not path.exists()


def test_cosine_decays_the_learning_rate_to_its_floor(tmp_path):
    config = write_config(tmp_path, {**TINY, "train": {
        "epochs": 4, "batch_size": 32, "learning_rate": 0.01, "lr_schedule": "cosine",
        "min_learning_rate": 0.001}})
    result = invoke("run", config, "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    rates = [float(line.split(",")[5]) for line in
             (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == 4
    assert rates[-1] == pytest.approx(0.001, rel=1e-4)  # the rate after the last step


def test_a_monitor_the_task_does_not_log_is_exit_2(tmp_path):
    config = write_config(tmp_path, {**TINY, "data": {"task": "sine", "num_samples": 100},
                                     "train": {"monitor": "val_accuracy"}})
    for command in ("validate", "run"):  # known from the config: before anything runs
        where = ("--runs-dir", tmp_path / "runs") if command == "run" else ()
        result = invoke(command, config, *where)
        assert result.exit_code == 2, result.stderr
        assert "train.monitor (line " in result.stderr
        assert "got 'val_accuracy'; task 'sine' (regression) logs" in result.stderr
        assert "val_mae, val_mse" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_monitor_that_the_data_file_rules_out_is_exit_2_naming_the_file(tmp_path):
    # kind: auto, float targets: regression, known only once the file is read.
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(40, 5, 2)).astype(np.float32),
             y=rng.normal(size=40).astype(np.float32))
    config = write_config(tmp_path, {**TINY, "data": {"task": "npz", "path": "data.npz"},
                                     "train": {"monitor": "val_accuracy"}})
    assert invoke("validate", config).exit_code == 0  # any task's metric, until the file
    result = invoke("run", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.stderr
    assert f"invalid config {tmp_path / 'data.npz'}" in result.stderr
    assert "the data of task 'npz' is regression, which logs" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_saves_after_the_first_build_no_throwaway_keras_objects(model, tmp_path, monkeypatch):
    # Keras' saver caches the attributes to skip under one key and reads another; seqtrain
    # stores them where it reads, so a save stops building an optimizer (and variables).
    import keras
    from keras.src.optimizers.optimizer import Optimizer

    from seqtrain.state import save_model

    rng = np.random.default_rng(0)  # one step: the optimizer has moments to save
    model.fit(rng.random((4, 3, 2), dtype="float32"), rng.integers(0, 2, (4, 3)), verbose=0)
    save_model(model, tmp_path / "first.keras")
    built = []
    original = Optimizer.__init__

    def counted(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Optimizer, "__init__", counted)
    save_model(model, tmp_path / "second.keras")
    assert built == []
    monkeypatch.undo()
    loaded = keras.saving.load_model(tmp_path / "second.keras", safe_mode=True)
    for ours, theirs in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert loaded.optimizer.iterations.numpy() == model.optimizer.iterations.numpy() == 1
    for ours, theirs in zip(loaded.optimizer.variables, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def _fit_with_validation(warm: bool, batches: int, steps_per_execution: int = 2):
    """A tiny fit with validation, as `experiment.py` runs it.

    Returns:
        The history, and the thread that traced each training step and each test step.
    """
    import threading

    import keras

    from seqtrain.data import Split
    from seqtrain.models import build_model, compile_model
    from seqtrain.pipeline import EpochOrder, evaluation_dataset, training_dataset
    from seqtrain.tuning.warm import WarmValidation

    keras.utils.set_random_seed(0)
    spec = TaskSpec(timesteps=5, features=3, num_classes=4, per_step=True)
    model = build_model(ModelConfig(units=4), spec)
    compile_model(model, TrainConfig(steps_per_execution=steps_per_execution), spec)
    traced: dict[str, list[str]] = {"train": [], "test": []}
    for kind in traced:
        step = getattr(model, f"{kind}_step")

        def counted(data, step=step, kind=kind):
            traced[kind].append(threading.current_thread().name)
            return step(data)

        setattr(model, f"{kind}_step", counted)
    rng = np.random.default_rng(0)

    def split(n):
        return Split(x=rng.random((n, 5, 3), dtype=np.float32), y=rng.integers(0, 4, (n, 5)),
                     sample_weight=np.ones((n, 5), np.float32))

    order = EpochOrder(4 * batches, 0, True)
    training = training_dataset(split(4 * batches), 4, order)
    validation = evaluation_dataset(split(8), 4)
    callbacks = [order, *([WarmValidation(training.element_spec, validation)] if warm else [])]
    history = model.fit(training, epochs=2, verbose=0, shuffle=False,
                        validation_data=validation, callbacks=callbacks)
    return history.history, traced


@pytest.mark.parametrize("batches,steps_per_execution", [(6, 2), (2, 2), (3, 1)],
                         ids=["three calls an epoch", "one call an epoch", "one step a call"])
def test_validation_is_traced_in_the_background_and_gives_the_same_results(
        batches, steps_per_execution):
    runtime.select_device("cpu")
    history, traced = _fit_with_validation(True, batches, steps_per_execution)
    # Each step traced once: Keras's own calls found the graphs traced ahead.
    assert traced == {"train": ["MainThread"], "test": ["seqtrain-warm-validation"]}
    plain, traced = _fit_with_validation(False, batches, steps_per_execution)
    assert traced == {"train": ["MainThread"], "test": ["MainThread"]}
    assert history == plain  # the same graphs: the same losses and metrics, to the bit


def test_the_final_line_says_early_stopping_ended_the_run(tmp_path: Path):
    # No change of 10 counts as an improvement: stops after epoch 2 of 5, patience 1.
    config = write_config(tmp_path, {**TINY, "train": {
        "epochs": 5, "batch_size": 32, "early_stopping": {"patience": 1, "min_delta": 10}}})
    result = invoke("run", config, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped_early"] == 2 and summary["epochs_run"] == 2
    assert "tiny: completed (stopped early at epoch 2: val_loss did not improve for 1 epoch)" \
        in " ".join(result.stderr.split())
