"""The built-in tasks: shapes, seeds, baselines, and a tiny real run that beats each baseline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from seqtrain.config import validate_config
from seqtrain.data import build_dataset
from tests.conftest import invoke, write_config


def dataset(task: str, seed: int = 1, **params):
    config = validate_config({"name": "t", "data": {"task": task, **params}}, {})
    return build_dataset(config.data, seed)


def test_adding_marks_two_values_whose_sum_is_the_target():
    data = dataset("adding", sequence_length=30, num_samples=500)
    x, y = data.train.x, data.train.y
    assert x.shape == (400, 30, 2) and y.shape == (400, 1)
    np.testing.assert_array_equal(x[..., 1].sum(axis=1), 2.0)
    assert (x[:, :15, 1].sum(axis=1) == 1).all()  # one marker in each half
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * x[..., 1]).sum(axis=1), rtol=1e-6)
    assert data.spec.kind == "regression" and not data.spec.per_step
    assert data.baseline.metrics["loss"] == pytest.approx(1 / 6, abs=0.02)  # Var of the sum


def test_copy_memory_repeats_the_symbols_after_the_delimiter():
    data = dataset("copy_memory", num_symbols=3, alphabet=5, delay=6, num_samples=200)
    tokens, y = data.train.x.argmax(-1), data.train.y
    assert data.train.x.shape == (160, 12, 7)
    np.testing.assert_array_equal(y[:, -3:], tokens[:, :3])
    np.testing.assert_array_equal(y[:, :-3], 0)
    np.testing.assert_array_equal(tokens[:, 8], 6)  # the delimiter, delay - 1 blanks later
    assert data.baseline.metrics["loss"] == pytest.approx(3 * math.log(5) / 12)


@pytest.mark.parametrize("mode", ["running", "final"])
def test_parity_is_the_xor_of_the_bits_so_far(mode):
    data = dataset("parity", sequence_length=7, mode=mode, num_samples=300)
    bits = data.train.x[..., 0].astype(int)
    expected = np.cumsum(bits, axis=1) % 2
    np.testing.assert_array_equal(data.train.y, expected if mode == "running" else expected[:, -1])
    assert data.baseline.metrics["loss"] == pytest.approx(math.log(2))


def test_sine_forecasts_the_values_after_the_window():
    data = dataset("sine", sequence_length=12, horizon=3, num_samples=100, noise=0.0)
    assert data.train.x.shape == (80, 12, 1) and data.train.y.shape == (80, 3)
    assert data.spec.output_dim == 3
    last = data.test.x[:, -1, 0][:, None]
    assert data.baseline.metrics["loss"] == pytest.approx(float(((last - data.test.y) ** 2).mean()),
                                                          rel=1e-5)


def test_shifted_digit_recall_asks_for_one_digit_per_sequence():
    data = dataset("shifted_digit", sequence_length=6, shift=2, mode="recall", num_samples=100)
    np.testing.assert_array_equal(data.train.y, data.train.x.argmax(-1)[:, 3])
    assert not data.spec.per_step
    assert data.baseline.metrics["accuracy"] == pytest.approx(0.1, abs=0.1)


def test_marked_recall_asks_for_the_symbol_at_the_one_marked_step_in_the_first_half(tmp_path):
    data = dataset("marked_recall", sequence_length=20, alphabet=5, num_samples=300)
    x, y = data.train.x, data.train.y
    assert x.shape == (240, 20, 6) and y.shape == (240,) and not data.spec.per_step
    np.testing.assert_array_equal(x[..., :5].sum(axis=-1), 1.0)  # one symbol at every step
    np.testing.assert_array_equal(x[..., 5].sum(axis=1), 1.0)  # one marked step
    marked = x[..., 5].argmax(axis=1)
    assert marked.max() < 10 and len(set(marked.tolist())) > 5
    np.testing.assert_array_equal(y, x[np.arange(240), marked, :5].argmax(-1))
    assert data.baseline.metrics["loss"] == pytest.approx(math.log(5))
    # The file form: symbols and marked steps, read back into the same inputs and targets.
    from seqtrain.data.registry import read_inputs

    config = validate_config({"name": "t", "data": {"task": "marked_recall",
                                                    "sequence_length": 20, "alphabet": 5}}, {})
    np.savez(tmp_path / "new.npz", x=x[..., :5].argmax(-1), marked=marked)
    split = read_inputs(config.data, tmp_path / "new.npz", data.preprocessing, targets=True)
    np.testing.assert_array_equal(split.x, x)
    np.testing.assert_array_equal(split.y, y)


@pytest.mark.parametrize("task,params", [
    ("adding", {"sequence_length": 8}), ("copy_memory", {"delay": 3, "num_symbols": 2}),
    ("parity", {}), ("sine", {}), ("shifted_digit", {"mode": "recall"}),
    ("marked_recall", {"sequence_length": 10})])
def test_every_task_is_a_function_of_its_seed(task, params):
    first, again, other = (dataset(task, s, num_samples=50, **params) for s in (3, 3, 4))
    np.testing.assert_array_equal(first.train.x, again.train.x)
    np.testing.assert_array_equal(first.test.y, again.test.y)
    assert not np.array_equal(first.train.x, other.train.x)


@pytest.mark.parametrize("task,params", [
    ("adding", {}), ("copy_memory", {}), ("parity", {}), ("parity", {"mode": "final"}),
    ("sine", {}), ("shifted_digit", {}), ("shifted_digit", {"mode": "recall"}),
    ("marked_recall", {})])
def test_a_generated_tasks_parameters_tell_its_head_before_the_data_is_made(task, params):
    config = validate_config({"name": "t", "data": {"task": task, "num_samples": 40,
                                                    **params}}, {})
    assert config.data.per_step() is build_dataset(config.data, 1).spec.per_step


# Tiny settings that train in seconds yet must clear the task's trivial baseline.
TINY_RUNS = {
    "adding": {"task": "adding", "sequence_length": 8, "num_samples": 1200},
    "copy_memory": {"task": "copy_memory", "num_symbols": 3, "alphabet": 4, "delay": 4,
                    "num_samples": 1200},
    "parity": {"task": "parity", "sequence_length": 5, "num_samples": 1200},
    "sine": {"task": "sine", "sequence_length": 20, "horizon": 2, "num_samples": 800},
    "recall": {"task": "shifted_digit", "mode": "recall", "sequence_length": 5, "shift": 2,
               "num_classes": 4, "num_samples": 1200},
    "marked_recall": {"task": "marked_recall", "sequence_length": 6, "alphabet": 3,
                      "num_samples": 1200},
}


@pytest.mark.parametrize("name", TINY_RUNS)
def test_a_tiny_run_beats_the_baseline(name: str, tmp_path: Path):
    config = write_config(tmp_path, {
        "name": name, "seed": 1, "device": "cpu", "data": TINY_RUNS[name],
        "model": {"cell": "lstm", "units": 16},
        "train": {"epochs": 6, "batch_size": 32, "learning_rate": 0.01}})
    result = invoke("run", config, "--run-dir", tmp_path / "run", "--quiet", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["baseline"]["loss"] > 0
    assert summary["test"]["loss"] < 0.7 * summary["baseline"]["loss"], summary
    metric = summary["task"]["metric"]
    assert f"val_{metric}" in summary["best"]
    evaluation = json.loads(invoke("eval", tmp_path / "run", "--json").stdout)
    assert evaluation["metrics"][metric] == summary["test"][metric]


@pytest.mark.slow
def test_an_embedded_bidirectional_stack_trains_and_evaluates_from_its_directory(tmp_path):
    config = write_config(tmp_path, {
        "name": "embedded", "seed": 2, "device": "cpu",
        "data": {"task": "copy_memory", "num_symbols": 2, "alphabet": 3, "delay": 3,
                 "num_samples": 400},
        "model": {"cell": "gru", "units": [8, 6], "bidirectional": True, "embedding_dim": 4,
                  "recurrent_dropout": 0.1},
        "train": {"epochs": 2, "batch_size": 32, "clipvalue": 1.0, "optimizer": "adamw",
                  "weight_decay": 0.01}})
    result = invoke("run", config, "--run-dir", tmp_path / "run", "--quiet", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    evaluation = json.loads(invoke("eval", tmp_path / "run", "--json").stdout)
    assert evaluation["metrics"] == summary["test"]


def test_an_embedding_needs_symbol_inputs(tmp_path):
    config = write_config(tmp_path, {"name": "x", "data": {"task": "adding"},
                                     "model": {"embedding_dim": 4}})
    result = invoke("validate", config)
    assert result.exit_code == 2 and "needs symbol inputs" in result.stderr
