"""`model.attention`: attention pooling trained, saved, reloaded, explained and refused.

Tiny real runs of the marked_recall task (and a ragged, masked CSV task) through the CLI;
their checkpoints are reloaded by plain Keras in a fresh process, scored again by eval,
predicted with their attention weights, drawn, planned and exported.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, invoke, write_config
from tests.test_tables import sequences_csv

TINY_RECALL = {
    "name": "recall", "seed": 5, "device": "cpu",
    "data": {"task": "marked_recall", "sequence_length": 12, "alphabet": 4, "num_samples": 160},
    "model": {"cell": "lstm", "units": 8, "attention": "additive"},
    "train": {"epochs": 2, "batch_size": 32},
}


def recall_config(folder: Path, attention: str = "additive", **model) -> Path:
    config = {**TINY_RECALL, "model": {**TINY_RECALL["model"], "attention": attention, **model}}
    return write_config(folder, config, name=f"recall-{attention}.yaml")


def train_recall(folder: Path, attention: str) -> Path:
    """TINY_RECALL on half its samples for one epoch: the fixtures need runs, not learning
    (the plan test still reads its 12 steps and 8 units). The last epoch is the best, as it
    was over two epochs on all the samples."""
    result = invoke("run", recall_config(folder, attention), "--run-dir", folder / "run",
                    "--quiet", "--set", "data.num_samples=80", "--set", "train.epochs=1")
    assert result.exit_code == 0, result.stderr
    return folder / "run"


@pytest.fixture(scope="module")
def attention_runs(tmp_path_factory) -> dict[str, Path]:
    """One run per score, so that a single fresh process can reload both checkpoints."""
    return {attention: train_recall(tmp_path_factory.mktemp(f"attention-{attention}"), attention)
            for attention in ("additive", "dot")}


@pytest.fixture(scope="module", params=["additive", "dot"])
def attention_run(request, attention_runs) -> Path:
    return attention_runs[request.param]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> Path:
    """The same task read from the last state (model.attention: none)."""
    return train_recall(tmp_path_factory.mktemp("no-attention"), "none")


@pytest.fixture(scope="module")
def recall_file(tmp_path_factory) -> Path:
    """Five new sequences in marked_recall's file form: symbols and the marked steps."""
    path = tmp_path_factory.mktemp("recall-file") / "recall.npz"
    rng = np.random.default_rng(1)
    np.savez(path, x=rng.integers(0, 4, (5, 12)), marked=np.array([0, 2, 4, 5, 1]))
    return path


PLAIN_KERAS = """
import json, sys
import numpy as np
import keras
import seqtrain  # after Keras: registers seqtrain>AttentionPooling
layers = []
for checkpoint, inputs, output in zip(*[iter(sys.argv[1:])] * 3):
    model = keras.saving.load_model(checkpoint, safe_mode=True)
    np.save(output, model.predict(np.load(inputs)["x"], verbose=0))
    layers.append([type(layer).__name__ for layer in model.layers])
print(json.dumps(layers))
"""


def test_best_keras_loads_in_plain_keras_with_safe_mode_and_predicts_identically(
        attention_runs, tmp_path):
    from seqtrain import load

    args, expected = [], {}
    for attention, run in attention_runs.items():  # both checkpoints in one fresh process
        trained = load(run)
        x = trained.prepare(split="test").x
        expected[attention] = trained.predict_arrays(x)
        np.savez(tmp_path / f"{attention}-x.npz", x=x)
        args += [run / "checkpoints" / "best.keras", tmp_path / f"{attention}-x.npz",
                 tmp_path / f"{attention}-out.npy"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", PLAIN_KERAS, *map(str, args)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        ["LSTM", "AttentionPooling", "Dense"]] * len(attention_runs)
    for attention, predicted in expected.items():
        reloaded = np.load(tmp_path / f"{attention}-out.npy")
        assert reloaded.tobytes() == predicted.tobytes(), attention


def test_eval_and_predict_reproduce_the_runs_test_metrics(attention_run):
    summary = json.loads((attention_run / "summary.json").read_text())
    result = invoke("eval", attention_run, "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    evaluation = json.loads(result.stdout)["metrics"]
    assert evaluation["accuracy"] == summary["test"]["accuracy"]
    assert evaluation["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-6)
    result = invoke("predict", attention_run, "--split", "test", "-o", attention_run.parent
                    / "test.csv", "--json", "--quiet", "--attention")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert metrics["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-5)


def test_predict_attention_adds_each_steps_weight_to_every_format(attention_run, recall_file,
                                                                  tmp_path):
    for suffix in ("csv", "jsonl", "npz"):
        result = invoke("predict", attention_run, recall_file, "--attention", "-o",
                        tmp_path / f"out.{suffix}", "--quiet")
        assert result.exit_code == 0, result.stderr
    arrays = np.load(tmp_path / "out.npz")
    weights = arrays["attention"]
    assert weights.shape == (5, 12) and (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert [int(r["predicted"]) for r in rows] == arrays["predicted"].tolist()
    table = np.array([[float(r[f"attention_{t}"]) for t in range(12)] for r in rows])
    np.testing.assert_allclose(table, weights, rtol=1e-6)
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([line["attention"] for line in lines], weights, rtol=1e-6)
    without = invoke("predict", attention_run, recall_file, "--quiet")
    assert "attention_0" not in without.stdout.splitlines()[0]


def test_plot_attention_draws_a_png(attention_run, recall_file, tmp_path):
    result = invoke("plot-attention", attention_run, recall_file, "-o", tmp_path / "a.png",
                    "--count", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = invoke("plot-attention", attention_run, "--split", "test", "-o",
                    tmp_path / "b.png")
    assert result.exit_code == 0, result.stderr
    result = invoke("plot-attention", attention_run, "--split", "test", "-o", tmp_path / "c.pdf")
    assert result.exit_code == 2 and "PNG" in result.stderr
    result = invoke("plot-attention", attention_run, "--split", "test", "--count", "0")
    assert result.exit_code == 2 and "--count got 0" in result.stderr
    before = sorted(path.name for path in attention_run.iterdir())
    for output, words in ((attention_run / "a.png", "inside the run directory"),
                          (tmp_path / "missing" / "a.png", "does not exist")):
        result = invoke("plot-attention", attention_run, "--split", "test", "-o", output)
        assert result.exit_code == 2 and words in result.stderr, result.stderr
    assert sorted(path.name for path in attention_run.iterdir()) == before
    assert not (tmp_path / "missing").exists()
    result = invoke("export", attention_run, "-o", attention_run / "served")
    assert result.exit_code == 2 and "inside the run directory" in result.stderr
    assert sorted(path.name for path in attention_run.iterdir()) == before


def test_a_run_without_attention_is_refused_by_predict_and_plot_attention(plain_run, tmp_path):
    folder = tmp_path
    for command in (("predict", plain_run, "--split", "test", "--attention",
                     "-o", folder / "p.csv"),
                    ("plot-attention", plain_run, "--split", "test", "-o", folder / "a.png")):
        result = invoke(*command)
        assert result.exit_code == 2, result.stderr
        assert f"{command[0] if command[0] != 'predict' else '--attention'}: run" in (
            result.stderr)
        assert "has no attention layer (model.attention: none)" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (folder / "p.csv").exists() and not (folder / "a.png").exists()


def test_padded_steps_get_zero_weight_and_each_row_sums_to_one(tmp_path):
    sequences_csv(tmp_path)
    config = write_config(tmp_path, {
        "name": "ragged", "seed": 1, "device": "cpu",
        "data": {"task": "csv_sequences", "path": "machines.csv", "id_column": "machine",
                 "order_column": "t", "columns": ["a", "b"], "target": "faulty",
                 "split": {"train": 0.5, "val": 0.25, "test": 0.25}},
        "model": {"cell": "gru", "units": 4, "attention": "dot", "bidirectional": True},
        "train": {"epochs": 1, "batch_size": 32}})
    result = invoke("run", config, "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    result = invoke("predict", tmp_path / "run", tmp_path / "machines.csv", "--attention",
                    "-o", tmp_path / "p.npz", "--quiet")
    assert result.exit_code == 0, result.stderr
    from seqtrain import load

    trained = load(tmp_path / "run")
    x = trained.prepare(tmp_path / "machines.csv").x
    padded = (x == -1e9).all(axis=-1)
    weights = np.load(tmp_path / "p.npz")["attention"]
    assert padded.any() and weights.shape == padded.shape
    assert (weights[padded] == 0).all() and (weights[~padded] > 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)


def test_per_step_tasks_are_refused_when_the_config_or_the_data_tells(tmp_path):
    config = write_config(tmp_path, {"name": "copy", "data": {"task": "copy_memory"},
                                     "model": {"attention": "dot"}}, name="copy.yaml")
    result = invoke("validate", config)
    assert result.exit_code == 2
    assert "model.attention (line " in result.stderr and "'copy_memory'" in result.stderr
    assert "top level" not in result.stderr  # told at the key, with its line
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "steps.npz", x=rng.normal(size=(40, 6, 2)).astype("float32"),
             y=rng.integers(0, 3, (40, 6)))
    config = write_config(tmp_path, {"name": "steps", "device": "cpu",
                                     "data": {"task": "npz", "path": "steps.npz"},
                                     "model": {"attention": "additive"}}, name="steps.yaml")
    assert invoke("validate", config).exit_code == 0  # targets: auto, the file tells
    for command in ("run", "plan"):
        result = invoke(command, config, "--runs-dir", tmp_path / "runs") if command == "run" \
            else invoke(command, config)
        assert result.exit_code == 2, result.stderr
        assert "model.attention: additive" in result.stderr and "'npz'" in result.stderr
        assert "steps.npz" in result.stderr  # the file that told
        assert "every step" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_plan_counts_the_attention_layer_and_keeps_cudnn_eligibility(tmp_path):
    plans = {}
    for attention in ("none", "additive", "dot"):
        result = invoke("plan", recall_config(tmp_path, attention), "--json")
        assert result.exit_code == 0, result.stderr
        plans[attention] = json.loads(result.stdout)
    assert plans["none"]["attention"] is None
    additive, dot = plans["additive"]["attention"], plans["dot"]["attention"]
    assert additive["params"] == 8 * 8 + 2 * 8 and dot["params"] == 8
    for attention, found in (("additive", additive), ("dot", dot)):
        layers = {layer["layer"]: layer for layer in plans[attention]["model"]}
        assert layers["attention"]["params"] == found["params"]
        assert plans[attention]["num_params"] == plans["none"]["num_params"] + found["params"]
        extra = found["forward_flops_per_step"] * 12
        assert (plans[attention]["flops"]["forward_per_sequence"]
                == plans["none"]["flops"]["forward_per_sequence"] + extra)
        assert plans[attention]["layers"] == plans["none"]["layers"]  # cuDNN verdicts too
        assert plans[attention]["cudnn"] == plans["none"]["cudnn"]
    text = invoke("plan", recall_config(tmp_path, "additive")).stdout
    assert "attention: additive pooling over the steps' 8-wide outputs, 80 params" in text


def test_a_saved_model_export_serves_the_attention_models_outputs(attention_run, tmp_path):
    import tensorflow as tf

    from seqtrain import load

    result = invoke("export", attention_run, "-o", tmp_path / "served", "--quiet")
    assert result.exit_code == 0, result.stderr
    trained = load(attention_run)
    x = trained.prepare(split="test").x
    serve = tf.saved_model.load(str(tmp_path / "served")).signatures["serving_default"]
    served = next(iter(serve(sequence=tf.constant(x)).values())).numpy()
    np.testing.assert_allclose(served, trained.predict_arrays(x), rtol=1e-5, atol=1e-6)


def test_the_pooling_stays_float32_under_mixed_precision_and_round_trips_its_config():
    import keras

    from seqtrain.config import ModelConfig
    from seqtrain.data import TaskSpec
    from seqtrain.layers import AttentionPooling
    from seqtrain.models import build_model

    spec = TaskSpec(timesteps=5, features=3, per_step=False, num_classes=2)
    model = build_model(ModelConfig(units=4, attention="additive"), spec,
                        precision="mixed_bfloat16")
    pooling = model.get_layer("attention")
    assert model.get_layer("lstm_1").compute_dtype == "bfloat16"
    assert pooling.compute_dtype == "float32" and pooling.supports_masking
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    pooled, weights = pooling(x, return_attention_scores=True)
    assert pooled.dtype == "float32" and weights.shape == (2, 5)
    mask = np.array([[True] * 3 + [False] * 2, [True] * 5])
    _, weights = pooling(x, mask=mask, return_attention_scores=True)
    assert (np.asarray(weights)[0, 3:] == 0).all()
    np.testing.assert_allclose(np.asarray(weights).sum(axis=1), 1.0, rtol=1e-6)
    copy = AttentionPooling.from_config(pooling.get_config())
    assert (copy.score, copy.units, copy.name) == ("additive", None, "attention")
    assert keras.saving.get_registered_name(AttentionPooling) == "seqtrain>AttentionPooling"
    with pytest.raises(ValueError, match="expected additive or dot"):
        AttentionPooling("cosine")


@pytest.mark.slow  # two runs of the shipped configs, a few minutes; CI runs the slow set too
def test_the_shipped_marked_recall_configs_attention_recalls_the_last_state_does_not(tmp_path):
    from tests.conftest import CONFIGS, run_cli

    accuracy = {}
    for name in ("marked_recall_attention", "marked_recall_lstm"):
        result = run_cli("run", CONFIGS / f"{name}.yaml", "--run-dir", tmp_path / name, "--json",
                         "--quiet")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        accuracy[name] = summary["test"]["accuracy"]
        if name == "marked_recall_attention":
            assert summary["warnings"] == []  # a healthy run: no gradient warning
    # docs/attention.md reports 1.000 and 0.144 (chance: 1/8)
    assert accuracy["marked_recall_attention"] >= 0.99, accuracy
    assert accuracy["marked_recall_lstm"] <= 0.25, accuracy


@pytest.mark.parametrize("arrays,words", [
    ({"x": np.zeros((3, 12), int)}, "has no array 'marked'"),
    ({"x": np.zeros((3, 12), int), "marked": np.zeros(2, int)},
     "array 'marked' has shape (2,) and dtype int64; expected (3,) integers"),
    ({"x": np.zeros((3, 12), int), "marked": np.array([0, 12, 1])},
     "array 'marked' holds 12 at sequence 1; the sequences of 'x' have steps 0 to 11"),
    ({"x": np.full((3, 12), 4), "marked": np.zeros(3, int)}, "symbols are 0 to 3"),
])
def test_a_marked_recall_file_that_does_not_fit_is_exit_2_naming_the_array(
        arrays, words, plain_run, tmp_path):
    folder = tmp_path
    np.savez(folder / "bad.npz", **arrays)
    result = invoke("predict", plain_run, folder / "bad.npz", "-o", folder / "p.csv")
    assert result.exit_code == 2, result.stderr
    assert words in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
    assert not (folder / "p.csv").exists()
