"""Gradient flow through time: the probe's numbers against a direct `tf.GradientTape`.

Real runs through the CLI; the reference is computed here from the run's saved checkpoints
(plain Keras models, without seqtrain's speed layer) on the probe's sequences.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from seqtrain import gradient_flow as flow
from seqtrain.config import load_config
from seqtrain.data import build_dataset
from seqtrain.data.registry import loss_divisor
from tests.conftest import CONFIGS, TINY, invoke, write_config

ADDING = {**TINY, "name": "adding",
          "data": {"task": "adding", "sequence_length": 12, "num_samples": 400,
                   "split": {"train": 0.8, "val": 0.1, "test": 0.1}},
          "model": {"cell": "lstm", "units": 8},
          "train": {"epochs": 3, "batch_size": 32, "learning_rate": 0.01, "clipnorm": 0.05,
                    "tensorboard": False}}


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def train(folder: Path, config: dict, name: str = "run", *args: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = folder / name
    result = invoke("run", write_config(folder, config), "--run-dir", run_dir, "--quiet", *args)
    assert result.exit_code == 0, result.stderr
    return run_dir


def direct(run_dir: Path, checkpoint: str) -> tuple[np.ndarray, float, dict[str, float]]:
    """Per-step input norms, global and per-layer weight norms, from a saved model by hand."""
    import keras
    import tensorflow as tf

    config = load_config(run_dir / "config.yaml")
    dataset = build_dataset(config.data, config.seed, bool(config.model.embedding_dim))
    summary = json.loads((run_dir / "summary.json").read_text())
    indices = np.asarray(summary["gradient_flow"]["probe"]["indices"])
    assert indices.tolist() == flow.probe_indices(len(dataset.val), config.seed).tolist()
    batch = dataset.val.take(indices)
    model = keras.saving.load_model(run_dir / "checkpoints" / f"{checkpoint}.keras",
                                    safe_mode=True)
    x = tf.constant(batch.x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        error = model(x, training=False) - batch.y
        loss = tf.reduce_mean(tf.square(error)) / loss_divisor(dataset.spec.output_scale)
    gradients = tape.gradient(loss, [x, *model.trainable_variables])
    per_sequence = np.asarray(gradients[0]) * len(indices)  # the summed loss's gradient
    steps = np.sqrt((per_sequence.astype(np.float64) ** 2).sum(-1).mean(0))
    squares = {v.path: float((np.asarray(g, np.float64) ** 2).sum())
               for v, g in zip(model.trainable_variables, gradients[1:], strict=True)}
    layers = {layer.name: float(np.sqrt(sum(squares[v.path] for v in layer.trainable_variables)))
              for layer in model.layers if layer.trainable_variables}
    return steps, float(np.sqrt(sum(squares.values()))), layers


def test_the_probe_equals_a_direct_gradient_tape_computation(tmp_path):
    run_dir = train(tmp_path, ADDING)
    flows = flow.read_flow(run_dir / flow.FILE)
    rows = metrics(run_dir)
    assert sorted(flows) == [1, 2, 3] and all(len(norms) == 12 for norms in flows.values())
    summary = json.loads((run_dir / "summary.json").read_text())
    # The last epoch (last.keras) and the best one (best.keras): the same probe sequences.
    for checkpoint, epoch in (("last", 3), ("best", summary["best_epoch"])):
        steps, norm, layers = direct(run_dir, checkpoint)
        np.testing.assert_allclose(flows[epoch], steps, rtol=1e-4)
        row = rows[epoch - 1]
        np.testing.assert_allclose(float(row[flow.NORM]), norm, rtol=1e-4)
        for name, value in layers.items():
            np.testing.assert_allclose(float(row[flow.LAYER_PREFIX + name]), value, rtol=1e-4)
        assert float(row[flow.RATIO]) == pytest.approx(steps[0] / steps[-1], rel=1e-4)
        # clipnorm 0.05 per weight tensor: the share of tensors above it is what is cut
        assert 0 < float(row[flow.CLIPPED]) <= 1
    assert summary["gradient_flow"]["epoch"] == 3 and summary["warnings"] == []
    assert (run_dir / flow.PLOT).stat().st_size > 10_000


def test_the_probe_changes_nothing_in_training(tmp_path):
    # Dropout draws from seed generators: the probe (inference mode) must not advance them.
    config = {**ADDING, "model": {"cell": "lstm", "units": 8, "dropout": 0.2}}
    measured = train(tmp_path, config, "on")
    plain = train(tmp_path, {**config, "train": {**config["train"], "gradient_flow": "off"}},
                  "off")
    assert not (plain / flow.FILE).exists() and not (plain / flow.PLOT).exists()
    kept = ("epoch", "loss", "mae", "mse", "val_loss", "val_mae", "val_mse", "learning_rate")
    assert ([{k: r[k] for k in kept} for r in metrics(measured)]
            == [{k: r[k] for k in kept} for r in metrics(plain)])
    assert not any(k.startswith("gradient_") for k in metrics(plain)[0])
    summary = json.loads((plain / "summary.json").read_text())
    assert summary["gradient_flow"] is None and summary["warnings"] == []


def test_padded_steps_are_left_out_and_bidirectional_embeddings_work(tmp_path):
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(3)
    lengths = rng.integers(2, 7, 80)  # steps 7 and 8 are padding in every sequence
    x = rng.normal(size=(80, 8, 2)).astype(np.float32)
    y = (x[..., 0] > 0).astype(np.int64)
    np.savez(tmp_path / "data.npz", x=x, y=y, lengths=lengths)
    config = {"name": "padded", "seed": 1, "device": "cpu",
              "data": {"task": "npz", "path": "data.npz", "lengths": "lengths"},
              "model": {"cell": "gru", "units": 8, "bidirectional": True},
              "train": {"epochs": 2, "batch_size": 16, "tensorboard": False}}
    run_dir = train(tmp_path, config)
    # by hand: each step's root mean square over the sequences that have it
    loaded = load_config(run_dir / "config.yaml")
    dataset = build_dataset(loaded.data, loaded.seed)
    indices = flow.probe_indices(len(dataset.val), loaded.seed)
    batch = dataset.val.take(indices)
    real = batch.sample_weight > 0
    measured = np.flatnonzero(real.any(0)) + 1
    assert measured.max() <= 6  # steps 7 and 8 are padding in every sequence
    with open(run_dir / flow.FILE) as file:
        assert sorted({int(row["step"]) for row in csv.DictReader(file)}) == measured.tolist()
    model = keras.saving.load_model(run_dir / "checkpoints" / "last.keras", safe_mode=True)
    inputs = tf.constant(batch.x)
    with tf.GradientTape() as tape:
        masked = model.layers[0](inputs)
        tape.watch(masked)
        outputs = masked
        for layer in model.layers[1:]:
            outputs = layer(outputs, training=False)
        loss = keras.losses.SparseCategoricalCrossentropy(reduction="mean_with_sample_weight")(
            batch.y, outputs, batch.sample_weight)
    squares = (np.asarray(tape.gradient(loss, masked), np.float64) * len(indices)) ** 2
    steps = measured - 1
    want = np.sqrt((squares.sum(-1) * real).sum(0)[steps] / real.sum(0)[steps])
    norms = flow.read_flow(run_dir / flow.FILE)[2]
    np.testing.assert_allclose(norms[steps], want, rtol=1e-4)

    # token inputs: the gradient reaching the embedding's output, per step
    text = yaml_config(CONFIGS / "text_example.yaml", epochs=1)
    text_run = train(tmp_path / "text", text)
    norms = flow.read_flow(text_run / flow.FILE)[1]
    assert np.isfinite(norms).any() and (norms[np.isfinite(norms)] >= 0).all()


def yaml_config(path: Path, **train_settings) -> dict:
    import yaml

    config = yaml.safe_load(path.read_text())
    config["data"]["path"] = str((path.parent / config["data"]["path"]).resolve())
    config["device"] = "cpu"
    config["train"] = {**config["train"], "tensorboard": False, **train_settings}
    return config


def rows_with(ratios, val_losses, norms=None, clipped=None) -> list[dict[str, float]]:
    norms = norms or [1.0] * len(ratios)
    clipped = clipped or [0.0] * len(ratios)
    return [{"epoch": i + 1, "val_loss": v, flow.RATIO: r, flow.NORM: n, flow.CLIPPED: c}
            for i, (r, v, n, c) in enumerate(zip(ratios, val_losses, norms, clipped,
                                                 strict=True))]


TRAIN = {"learning_rate": 0.002, "clipnorm": None, "clipvalue": None}


def test_diagnose_warns_of_a_vanishing_gradient_only_while_nothing_is_learned():
    stuck = rows_with([1e-3, 1e-8, 1e-9, 1e-8, 1e-9], [0.17] * 5)
    (warning,) = flow.diagnose(stuck, 0.167, TRAIN, "simple_rnn")
    assert warning.kind == "vanishing_gradient" and warning.epoch == 4
    assert "model.cell: lstm or gru" in warning.message
    learning = rows_with([1e-3, 1e-8, 1e-9, 1e-8, 1e-9], [0.17, 0.1, 0.05, 0.02, 0.01])
    assert flow.diagnose(learning, 0.167, TRAIN, "simple_rnn") == []
    assert flow.diagnose(rows_with([1e-2] * 5, [0.17] * 5), 0.167, TRAIN, "simple_rnn") == []
    # An LSTM or GRU often sits on such a plateau before it learns: told only at the end.
    assert flow.diagnose(stuck, 0.167, TRAIN, "lstm") == []
    (warning,) = flow.diagnose(stuck, 0.167, TRAIN, "lstm", ended=True)
    assert warning.epoch == 5 and "train longer" in warning.message
    # without a baseline, "stuck" is measured against the first epoch's val_loss
    (warning,) = flow.diagnose(stuck, None, TRAIN, "simple_rnn")
    assert warning.epoch == 4
    # below the (test split's) baseline from the start, yet never better than epoch 1: stuck
    flat = rows_with([1e-3, 1e-8, 1e-9, 1e-8, 1e-9], [0.14, 0.145, 0.139, 0.141, 0.14])
    (warning,) = flow.diagnose(flat, 0.167, TRAIN, "simple_rnn")
    assert warning.epoch == 4


def test_diagnose_warns_of_an_exploding_gradient_and_of_clipping_that_cuts_every_epoch():
    exploding = rows_with([0.1] * 4, [0.1] * 4, norms=[1.0, 2.0, 1.5, 5e3])
    (warning,) = flow.diagnose(exploding, 0.167, TRAIN, "gru")
    assert warning.kind == "exploding_gradient" and warning.epoch == 4
    assert "train.clipnorm" in warning.message and "0.002" in warning.message
    (nan,) = flow.diagnose(rows_with([0.1], [0.1], norms=[float("nan")]), None, TRAIN, "gru")
    assert nan.kind == "exploding_gradient"
    clipped = rows_with([0.1] * 6, [0.17] * 6, clipped=[1.0] * 6)
    (warning,) = flow.diagnose(clipped, 0.167, {**TRAIN, "clipnorm": 0.01}, "lstm")
    assert warning.kind == "clipping" and warning.epoch == 5 and "clipnorm 0.01" in warning.message


def test_a_vanishing_gradient_is_told_on_the_epoch_line_and_in_the_summary(tmp_path):
    # A SimpleRNN that cannot learn (learning rate ~0) on long sequences: the gradient
    # reaching the first step vanishes, and the loss stays at the baseline.
    config = {**ADDING, "model": {"cell": "simple_rnn", "units": 8},
              "data": {**ADDING["data"], "sequence_length": 150},
              "train": {"epochs": 3, "batch_size": 32, "learning_rate": 1e-9,
                        "tensorboard": False}}
    folder = tmp_path / "vanishing"
    folder.mkdir()
    result = invoke("run", write_config(folder, config), "--run-dir", folder / "run")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((folder / "run" / "summary.json").read_text())
    assert [w["kind"] for w in summary["warnings"]] == ["vanishing_gradient"], summary
    assert summary["gradient_flow"][flow.RATIO] < flow.VANISHED
    line = next(line for line in result.stderr.splitlines() if line.startswith("epoch 3/3"))
    assert "warning: vanishing gradient" in line and "model.cell: lstm or gru" in line
    assert "warning (epoch 3): vanishing gradient" in result.stderr  # under the table too


def test_plot_overlays_runs_and_refuses_a_metric_with_it(tmp_path):
    lstm = train(tmp_path, ADDING, "lstm")
    gru = train(tmp_path, {**ADDING, "model": {"cell": "gru", "units": 8}}, "gru")
    off = train(tmp_path / "more",
                {**ADDING, "train": {**ADDING["train"], "gradient_flow": "off", "epochs": 1}},
                "off")
    out = tmp_path / "flow.png"
    result = invoke("plot", "--gradient-flow", lstm, gru, tmp_path / "more", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out) and out.stat().st_size > 10_000
    assert f"skipped {off}" in result.stderr
    result = invoke("plot", "--gradient-flow", "--epoch", "9", lstm, "-o", out)
    assert result.exit_code == 2 and "no epoch 9" in result.stderr
    result = invoke("plot", "--gradient-flow", "--metric", "val_loss", lstm, "-o", out)
    assert result.exit_code == 2 and "--metric" in result.stderr
    result = invoke("plot", "--epoch", "2", lstm, "-o", out)
    assert result.exit_code == 2 and "--gradient-flow" in result.stderr


def test_clipnorm_and_clipvalue_together_are_refused_before_anything_runs(tmp_path):
    config = {**ADDING, "train": {**ADDING["train"], "clipvalue": 0.5}}
    result = invoke("run", write_config(tmp_path, config), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert "clipnorm (0.05) and clipvalue (0.5)" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # three runs of up to 30 epochs at 100 steps; CI runs the slow set too
def test_the_adding_configs_at_100_steps_show_what_docs_gradient_flow_reports(tmp_path):
    from tests.conftest import run_cli

    found = {}
    for cell in ("simple_rnn", "lstm", "gru"):
        result = run_cli("run", CONFIGS / f"adding_{cell}.yaml", "--run-dir", tmp_path / cell,
                         "--json", "--quiet", "--set", "device=cpu")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        rows = metrics(tmp_path / cell)
        found[cell] = (summary, float(rows[0][flow.RATIO]), float(rows[-1][flow.RATIO]))
    # docs/gradient-flow.md: every cell loses the gradient in epoch 1; trained, the gated
    # cells carry a fifth of it over 100 steps, healthy runs without a warning, while the
    # SimpleRNN stays at the baseline and is told its gradient vanishes.
    for cell, (summary, first, last) in found.items():
        assert first < 1e-6, (cell, first)
        if cell == "simple_rnn":
            assert summary["test"]["mse"] > 0.9 * summary["baseline"]["mse"]
            assert [w["kind"] for w in summary["warnings"]] == ["vanishing_gradient"]
            assert last < 1e-6
        else:
            assert summary["test"]["mse"] < 0.01 * summary["baseline"]["mse"], cell
            assert summary["warnings"] == [] and last > 0.05, (cell, last)


@pytest.mark.slow  # a mirrored run on two logical CPUs, in its own process
def test_the_probe_under_mirrored_distribution_equals_a_direct_computation(tmp_path):
    from tests.conftest import run_cli

    config = {**ADDING, "distribution": "mirrored", "runtime": {"cpu_devices": 2}}
    folder = tmp_path / "mirrored"
    folder.mkdir()
    result = run_cli("run", write_config(folder, config), "--run-dir", folder / "run", "--quiet")
    assert result.returncode == 0, result.stderr
    run_dir = folder / "run"
    steps, norm, _ = direct(run_dir, "last")
    np.testing.assert_allclose(flow.read_flow(run_dir / flow.FILE)[3], steps, rtol=1e-4)
    np.testing.assert_allclose(float(metrics(run_dir)[-1][flow.NORM]), norm, rtol=1e-4)


def test_a_diverged_run_keeps_its_nan_rows_and_is_told_its_gradient_exploded(tmp_path):
    config = {**ADDING, "train": {**ADDING["train"], "optimizer": "sgd", "learning_rate": 1e6,
                                  "clipnorm": None, "epochs": 2}}
    run_dir = tmp_path / "run"
    result = invoke("run", write_config(tmp_path, config), "--run-dir", run_dir, "--quiet")
    assert result.exit_code == 1 and "loss became NaN" in result.stderr  # a diverged run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert "exploding_gradient" in [w["kind"] for w in summary["warnings"]]
    lines = (run_dir / flow.FILE).read_text().splitlines()
    assert len(lines) == 1 + 12 and all(line.endswith(",nan") for line in lines[1:])
    result = invoke("plot", "--gradient-flow", run_dir, "-o", tmp_path / "p.png")
    assert result.exit_code == 2 and "no finite norm" in result.stderr


def test_a_damaged_gradient_flow_file_is_exit_2_for_resume_and_plot(tmp_path):
    run_dir = train(tmp_path, {**ADDING, "train": {**ADDING["train"], "epochs": 1}})
    (run_dir / flow.FILE).write_text("epoch,step,norm\n1,2\n")
    before = (run_dir / "summary.json").read_text()
    result = invoke("resume", run_dir, "--set", "train.epochs=2", "--quiet")
    assert result.exit_code == 2 and "gradient_flow.csv is damaged" in result.stderr
    assert "remove it to resume" in result.stderr and "Traceback" not in result.stderr
    assert (run_dir / "summary.json").read_text() == before  # nothing written
    result = invoke("plot", "--gradient-flow", run_dir, "-o", tmp_path / "p.png")
    assert result.exit_code == 2 and "gradient_flow.csv is damaged" in result.stderr
    (run_dir / flow.FILE).unlink()  # as the message says: the run resumes without it
    result = invoke("resume", run_dir, "--set", "train.epochs=2", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert sorted(flow.read_flow(run_dir / flow.FILE)) == [2]
