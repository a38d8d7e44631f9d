"""Your own data from .npz files: shapes, splits, masking, missing values and every error."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from seqtrain.config import load_config
from seqtrain.data import build_dataset
from seqtrain.data.preprocessing import PAD
from seqtrain.errors import DataError
from tests.conftest import ROOT, invoke, run_cli, write_config


def npz(folder: Path, name: str = "data.npz", **arrays) -> Path:
    path = folder / name
    np.savez(path, **arrays)
    return path


def config_for(folder: Path, data: dict, **train) -> Path:
    return write_config(folder, {
        "name": "files", "seed": 1, "device": "cpu", "data": {"task": "npz", **data},
        "model": {"cell": "gru", "units": 8},
        "train": {"epochs": 2, "batch_size": 16, **train}})


def load(folder: Path, **data):
    return build_dataset(load_config(config_for(folder, data)).data, seed=1)


def rng_arrays(n=60, steps=6, features=3):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, steps, features)).astype(np.float32), rng.integers(0, 3, n)


def test_float_sequences_with_class_targets(tmp_path):
    x, y = rng_arrays()
    npz(tmp_path, x=x, y=y)
    data = load(tmp_path, path="data.npz")
    assert data.spec.kind == "classification" and data.spec.num_classes == 3
    assert not data.spec.per_step and data.train.x.shape == (48, 6, 3)
    assert sorted(np.concatenate([data.train.y, data.val.y, data.test.y])) == sorted(y)


def test_integer_tokens_become_one_hot_and_per_step_values_regression(tmp_path):
    tokens = np.random.default_rng(1).integers(0, 5, (40, 7))
    npz(tmp_path, x=tokens, y=tokens.astype(np.float32) * 0.5)
    data = load(tmp_path, path="data.npz")
    assert data.train.x.shape == (32, 7, 5) and data.spec.kind == "regression"
    assert data.spec.per_step and data.train.y.shape == (32, 7, 1)
    np.testing.assert_array_equal(data.train.x.argmax(-1) * 0.5, data.train.y[..., 0])


def test_given_validation_and_test_arrays_are_used_as_they_are(tmp_path):
    x, y = rng_arrays(30)
    npz(tmp_path, x=x, y=y, x_val=x[:5], y_val=y[:5], x_test=x[:7], y_test=y[:7])
    data = load(tmp_path, path="data.npz")
    assert (len(data.train), len(data.val), len(data.test)) == (30, 5, 7)


def test_a_relative_path_starts_at_the_config_folder(tmp_path):
    x, y = rng_arrays()
    (tmp_path / "project" / "data").mkdir(parents=True)
    npz(tmp_path / "project" / "data", x=x, y=y)
    config = config_for(tmp_path / "project", {"path": "data/data.npz"})
    result = run_cli("validate", config, cwd=tmp_path)  # started elsewhere
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "project" / "data" / "data.npz") in result.stdout


def test_padded_steps_change_neither_loss_nor_metrics(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 8, 2)).astype(np.float32)
    lengths = rng.integers(2, 9, 64)
    y = rng.integers(0, 2, (64, 8))
    padding = np.arange(8)[None, :] >= lengths[:, None]
    garbage_x, garbage_y = x.copy(), y.copy()
    garbage_x[padding] = rng.normal(size=garbage_x[padding].shape) * 100
    garbage_y[padding] = 1 - garbage_y[padding]
    runs = []
    for name, (xs, ys) in {"clean": (x, y), "garbage": (garbage_x, garbage_y)}.items():
        folder = tmp_path / name
        folder.mkdir()
        npz(folder, x=np.where(padding[..., None], 0.0, xs) if name == "clean" else xs, y=ys,
            lengths=lengths)
        config = config_for(folder, {"path": "data.npz", "lengths": "lengths"})
        result = invoke("run", config, "--run-dir", folder / "run", "--quiet")
        assert result.exit_code == 0, result.stderr
        with open(folder / "run" / "metrics.csv") as file:
            runs.append([{k: v for k, v in row.items() if k != "epoch_seconds"}
                         for row in csv.DictReader(file)])
    assert runs[0] == runs[1]
    data = load(tmp_path / "garbage", path="data.npz", lengths="lengths")
    assert (data.train.x[data.train.sample_weight == 0] == PAD).all()


@pytest.mark.parametrize("policy", ["mask", "zero", "ffill"])
def test_missing_values_follow_the_policy(policy, tmp_path):
    x, y = rng_arrays()
    x[3, 2, 1] = np.nan
    npz(tmp_path, x=x, y=y)
    data = load(tmp_path, path="data.npz", missing=policy, split={"train": 1.0 - 2 / 60,
                                                                   "val": 1 / 60,
                                                                   "test": 1 / 60})
    every = np.concatenate([data.train.x, data.val.x, data.test.x])
    assert not np.isnan(every).any()
    assert data.spec.masked == (policy == "mask")


def test_the_run_records_the_file_and_eval_warns_when_it_changed(tmp_path):
    x, y = rng_arrays()
    path = npz(tmp_path, x=x, y=y)
    config = config_for(tmp_path, {"path": "data.npz"})
    result = invoke("run", config, "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    recorded = json.loads((tmp_path / "run" / "env.json").read_text())["data_files"]
    assert recorded[0]["path"] == str(path) and recorded[0]["bytes"] == path.stat().st_size
    assert "warning" not in invoke("eval", tmp_path / "run", "--quiet").stderr
    x[0, 0, 0] += 1
    npz(tmp_path, x=x, y=y)
    result = invoke("eval", tmp_path / "run", "--quiet")
    assert result.exit_code == 0 and "data.npz changed since training" in result.stderr


def pickled(folder: Path) -> None:
    np.savez(folder / "data.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))


def bad_arrays(**arrays):
    return lambda folder: npz(folder, **arrays)


X, Y = rng_arrays()
# (case, how to make the file, data options, words the message must contain)
BROKEN = [
    ("file missing", lambda f: None, {}, ["data.npz does not exist"]),
    ("not an npz", lambda f: (f / "data.npz").write_bytes(b"junk"), {}, ["not a readable"]),
    ("pickled objects", pickled, {}, ["allow_pickle", "plain numeric arrays"]),
    ("array missing", bad_arrays(x=X, labels=Y), {}, ["no array 'y'", "labels"]),
    ("rows differ", bad_arrays(x=X, y=Y[:10]), {}, ["'y' has 10 rows but 'x' has 60"]),
    ("x of a wrong shape", bad_arrays(x=X[:, 0], y=Y), {}, ["'x' has shape (60, 3)"]),
    ("NaN in inputs", bad_arrays(x=np.where(np.arange(6)[:, None] == 2, np.nan, X), y=Y), {},
     ["'x' has NaN", "sequence 0, step 2, counted from 0", "data.missing"]),
    ("NaN in targets", bad_arrays(x=X, y=np.full(60, np.nan)), {}, ["'y' must be finite numbers"]),
    ("per-step steps differ", bad_arrays(x=X, y=np.zeros((60, 4), np.int64)),
     {"targets": "per_step"}, ["have 4 steps but 'x' has 6"]),
    ("too few samples", bad_arrays(x=X[:2], y=Y[:2]), {}, ["every split needs at least 1"]),
    ("half the split arrays", bad_arrays(x=X, y=Y, x_val=X), {}, ["together"]),
    ("lengths out of range", bad_arrays(x=X, y=Y, lengths=np.full(60, 9)),
     {"lengths": "lengths"}, ["lengths must be 60 integers in [1, 6]"]),
    ("negative tokens", bad_arrays(x=-np.ones((60, 6), np.int64), y=Y), {},
     ["negative tokens"]),
]


@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_data_is_exit_2_naming_the_file_and_array(case, tmp_path):
    _, make, options, words = case
    make(tmp_path)
    config = config_for(tmp_path, {"path": "data.npz", **options})
    result = invoke("run", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    for word in words:
        assert word in result.stderr, f"{word!r} not in:\n{result.stderr}"
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_the_shipped_npz_example_trains_beyond_its_baseline(tmp_path):
    assert (ROOT / "examples" / "sequences.npz").is_file()
    result = invoke("run", ROOT / "configs" / "npz_example.yaml", "--run-dir", tmp_path / "run",
                    "--quiet", "--json", "--set", "train.epochs=2", "--set", "device=cpu")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["test"]["accuracy"] > summary["baseline"]["accuracy"] + 0.1
    assert summary["warnings"] == []  # a healthy run: no gradient warning


def test_regression_targets_are_learnt_standardised_and_reported_in_their_units(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 6, 2)).astype(np.float32)
    y = (1000 + 50 * x[:, :, 0].sum(axis=1)).astype(np.float32)  # a target around 1000
    npz(tmp_path, x=x, y=y)
    data = load(tmp_path, path="data.npz")
    assert data.spec.output_offset[0] == pytest.approx(data.train.y.mean(), rel=1e-6)
    assert data.spec.output_scale[0] == pytest.approx(data.train.y.std(), rel=1e-6)
    result = invoke("run", config_for(tmp_path, {"path": "data.npz"}), "--run-dir",
                    tmp_path / "run", "--quiet", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    test, baseline = summary["test"], summary["baseline"]
    # loss: the standardised target's squared error; mse and mae: the target's own units.
    variance = data.spec.output_scale[0] ** 2
    assert test["loss"] == pytest.approx(test["mse"] / variance, rel=1e-4)
    assert baseline["mse"] == pytest.approx(baseline["loss"] * variance, rel=1e-6)
    assert baseline["mse"] > 1000 and test["mae"] > 1  # units of ~50 per step, not of ~1
    none = load(tmp_path, path="data.npz", normalization="none")
    assert none.spec.output_scale == ()
    # Several target columns share one scale, so the loss stays the standardised MSE.
    npz(tmp_path, "two.npz", x=x, y=np.stack([y, y / 10], axis=1))
    two = load(tmp_path, path="two.npz")
    assert two.spec.output_scale[0] == two.spec.output_scale[1]
    assert two.spec.output_offset[1] == pytest.approx(two.spec.output_offset[0] / 10, rel=1e-6)


def test_a_regression_run_from_before_preprocessing_json_resumes_as_it_was(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(80, 5, 2)).astype(np.float32)
    npz(tmp_path, x=x, y=x.sum(axis=(1, 2)))
    config = config_for(tmp_path, {"path": "data.npz", "normalization": "none"}, epochs=1)
    assert invoke("run", config, "--run-dir", tmp_path / "run", "--quiet").exit_code == 0
    run = tmp_path / "run"
    (run / "preprocessing.json").unlink()  # what an older release left: no mse either
    with open(run / "metrics.csv", newline="") as file:
        rows = [{k: v for k, v in row.items() if "mse" not in k} for row in csv.DictReader(file)]
    with open(run / "metrics.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for epochs in (2, 3):
        result = invoke("resume", run, "--set", f"train.epochs={epochs}", "--quiet")
        assert result.exit_code == 0, result.stderr
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header == ("epoch,loss,mae,val_loss,val_mae,learning_rate,epoch_seconds,"
                      "gradient_norm,gradient_clipped,gradient_first_to_last,"
                      "gradient_norm_gru_1,gradient_norm_head")
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 3


def test_data_errors_are_data_errors(tmp_path):
    with pytest.raises(DataError):
        load(tmp_path, path="missing.npz")
    assert os.path.exists(ROOT / "examples" / "make_npz.py")


def test_integer_tokens_can_feed_an_embedding_and_floats_cannot(tmp_path):
    tokens = np.random.default_rng(3).integers(0, 6, (80, 5))
    npz(tmp_path, x=tokens, y=tokens[:, -1])
    config = config_for(tmp_path, {"path": "data.npz"})
    result = invoke("run", config, "--run-dir", tmp_path / "run", "--quiet", "--set",
                    "model.embedding_dim=3", "--set", "train.epochs=1")
    assert result.exit_code == 0, result.stderr
    x, y = rng_arrays()
    npz(tmp_path, "floats.npz", x=x, y=y)
    result = invoke("run", config_for(tmp_path, {"path": "floats.npz"}), "--runs-dir",
                    tmp_path / "runs", "--set", "model.embedding_dim=3")
    assert result.exit_code == 2 and "needs symbol inputs" in result.stderr
    assert not (tmp_path / "runs").exists()
