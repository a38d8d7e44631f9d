"""Batch streams: the same model, its batch run in parts through the recurrent layers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seqtrain import tuning
from seqtrain.config import validate_config
from seqtrain.plan import gist
from seqtrain.tuning import streams
from tests.conftest import ROOT, TINY, gpu_env, invoke, run_cli, write_config

REFERENCE = {**TINY, "model": {"cell": "lstm", "units": 128}, "train": {"batch_size": 128}}


def config(**sections):
    raw = json.loads(json.dumps(REFERENCE))
    for section, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return validate_config(raw, {})


def streams_of(config, cores: int) -> int:
    return tuning.resolve(config, cores).streams


def one(config, cores: int) -> bool:
    """Whether `config` trains with one thread per operation on `cores` cores."""
    return tuning.resolve(config, cores).intra_op_threads == 1


def test_auto_gives_one_stream_per_core_to_small_recurrent_products():
    assert streams_of(config(), cores=2) == 2
    assert streams_of(config(), cores=1) == 1
    # no stream under MIN_STREAM_SEQUENCES sequences
    assert streams_of(config(train={"batch_size": 16}), cores=2) == 1


def test_auto_applies_its_two_core_measurements_to_two_cores_only():
    many = config(model={"cell": "gru", "units": 96})
    assert streams_of(many, cores=2) == 2 and one(many, cores=2)
    assert streams_of(many, cores=4) == 1 and not one(many, cores=4)  # TensorFlow's threads
    assert tuning.resolve(many, cores=4).recurrent_loop == "seqtrain"  # no thread question
    # an explicit count is the user's measurement
    assert streams_of(config(runtime={"streams": 4}), cores=8) == 4


def test_auto_keeps_large_and_tiny_products_and_mirrored_replicas_whole():
    big = config(model={"cell": "lstm", "units": 256})
    assert tuning.step_product(big) == 128 * 256 * 4 * 256 > tuning.AUTO_MAX_PRODUCT
    assert streams_of(big, cores=2) == 1
    tiny = config(model={"cell": "lstm", "units": 64}, train={"batch_size": 64})
    assert tuning.step_product(tiny) < tuning.AUTO_MIN_PRODUCT  # the default experiment
    assert streams_of(tiny, cores=2) == 1
    # the widest of stacked layers decides
    assert streams_of(config(model={"cell": "lstm", "units": [64, 256]}), cores=2) == 1
    mirrored = config(distribution="mirrored", runtime={"cpu_devices": 2})
    assert streams_of(mirrored, cores=2) == 1


def test_products_up_to_the_streams_bound_run_one_thread_per_operation():
    tiny = config(model={"cell": "lstm", "units": 64}, train={"batch_size": 64})
    assert streams_of(tiny, cores=2) == 1 and one(tiny, cores=2)  # the default experiment
    assert one(config(), cores=2) and one(config(), cores=1)  # streams, or one core's product
    big = config(model={"cell": "lstm", "units": 256})
    assert not one(big, cores=2)  # 32 Mi: TensorFlow splits it well
    assert one(config(model={"cell": "lstm", "units": 256}, runtime={"streams": 2}), cores=2)
    bound = config(model={"cell": "gru", "units": 256})
    assert tuning.step_product(bound) == tuning.AUTO_MAX_PRODUCT and one(bound, cores=2)
    mirrored = config(distribution="mirrored", runtime={"cpu_devices": 2})
    assert not one(mirrored, cores=2)


def test_one_stream_of_a_small_product_gets_one_thread_per_operation_from_tensorflow():
    # A fresh process: threads are fixed once TensorFlow has started in a process.
    import subprocess
    import sys

    script = ("import json, sys; "
              "from seqtrain.config import validate_config; "
              "from seqtrain import tuning; "
              "config = validate_config(json.loads(sys.argv[1]), {}); "
              "devices, chosen = tuning.select(config, tuning.choose(config)); "
              "print(chosen.streams, devices.threads['intra_op'])")
    out = subprocess.run([sys.executable, "-c", script, json.dumps(TINY)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_an_explicit_count_is_kept_and_checked(tmp_path: Path):
    assert streams_of(config(runtime={"streams": 3}), cores=1) == 3
    for bad in (0, "many", 1.5):
        result = invoke("validate", write_config(tmp_path, {**TINY, "runtime": {"streams": bad}}))
        assert result.exit_code == 2, result.stderr
        assert "runtime.streams (line " in result.stderr
        assert f"got {bad!r}; expected auto or a whole number >= 1" in result.stderr
    mirrored = {**TINY, "distribution": "mirrored", "runtime": {"cpu_devices": 2, "streams": 2}}
    result = invoke("validate", write_config(tmp_path, mirrored))
    assert result.exit_code == 2, result.stderr
    assert "runtime.streams (line 24): 2 splits" in result.stderr, result.stderr


def _models(masked: bool = False):
    """Two copies of one model (Masking, Bidirectional LSTM, GRU, dropout); the first streamed."""
    import keras

    def build():
        layers = [keras.Input((None, 3))]
        if masked:
            layers.append(keras.layers.Masking(-1.0))
        layers += [
            keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True, dropout=0.3,
                                                         recurrent_dropout=0.2)),
            keras.layers.GRU(5, dropout=0.2),
            keras.layers.Dense(2, activation="softmax"),
        ]
        return keras.Sequential(layers)

    streamed, plain = build(), build()
    plain.set_weights(streamed.get_weights())
    return streams.install(streamed, 2), plain


@pytest.mark.parametrize("batch", [1, 5])
def test_a_streamed_model_computes_what_the_plain_one_does(batch: int):
    import keras
    import tensorflow as tf

    streamed, plain = _models(masked=True)
    x = np.random.default_rng(batch).random((batch, 7, 3), dtype="float32")
    x[0, 4:] = -1.0  # padding the mask hides
    y = np.zeros(batch, dtype="int32")
    np.testing.assert_allclose(streamed(x), plain(x), atol=1e-6)
    grads = []
    for model in (streamed, plain):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x)))
        grads.append(tape.gradient(loss, model.trainable_variables))
    for ours, theirs in zip(*grads, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_a_streamed_model_drops_what_the_plain_one_drops():
    from seqtrain.state import seed_variables

    streamed, plain = _models()
    for ours, theirs in zip(seed_variables(streamed), seed_variables(plain), strict=True):
        theirs.assign(ours)  # the same dropout draws to come
    x = np.random.default_rng(3).random((5, 7, 3), dtype="float32")
    for _ in range(2):  # and the seeds move on alike
        np.testing.assert_allclose(streamed(x, training=True), plain(x, training=True),
                                   atol=1e-6)
    assert not np.allclose(streamed(x, training=True), streamed(x, training=False))


@pytest.mark.slow  # three runs; the default set trains streams in other tests
def test_a_streamed_model_trains_with_dropout_and_saves_as_plain_keras(tmp_path: Path):
    import keras

    streamed, _ = _models()
    streamed.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((9, 5, 3), dtype="float32")  # batches of 4, 4, 1
    history = streamed.fit(x, np.arange(9) % 2, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    # a batch smaller than the streams, its size known when traced (as on resume)
    assert np.isfinite(streamed.evaluate(x[:1], np.zeros(1), batch_size=1, verbose=0))
    path = tmp_path / "streamed.keras"
    streamed.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert "call" in vars(streamed) and "call" not in vars(loaded)
    np.testing.assert_allclose(loaded(x), streamed(x), atol=1e-6)  # whole batch vs parts


def test_a_cpu_run_records_its_streams_and_single_threaded_ops(tmp_path: Path):
    # A fresh process: threads are fixed once TensorFlow has started in a process.
    config_path = write_config(tmp_path, {**TINY, "runtime": {"streams": 2}})
    result = run_cli("run", config_path, "--run-dir", tmp_path / "run", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["speed_settings"]["streams"] == 2
    assert summary["speed_settings"]["threads"]["intra_op"] == 1
    assert summary["speed_settings"]["recurrent_loop"] == "seqtrain"  # the default, auto
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["streams"] == 2 and "2 batch streams" in gist(plan)  # the plan's line
    assert plan["recurrent_loop"] == "seqtrain" and "seqtrain's recurrent step" in gist(plan)


@pytest.mark.slow
def test_a_streamed_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path: Path):
    import signal

    from tests.test_resume import CONFIG, assert_same_run, finish, start

    config = write_config(tmp_path, {**CONFIG, "runtime": {"streams": 2}})
    code, _, err = finish(start(config, tmp_path / "reference"))
    assert code == 0, err
    run_dir = tmp_path / "run"
    code, _, _ = finish(start(config, run_dir, fault="kill:resume.json:5"))
    assert code == -signal.SIGKILL
    result = run_cli("resume", run_dir, "--quiet")  # a fresh process, threads as in the run
    assert result.returncode == 0, result.stderr
    assert_same_run(run_dir, tmp_path / "reference")
    assert json.loads((run_dir / "summary.json").read_text())["speed_settings"]["streams"] == 2


@pytest.mark.gpu
def test_a_gpu_run_keeps_its_batch_whole_for_cudnn(tmp_path: Path):
    import subprocess
    import sys

    config = write_config(tmp_path, {**TINY, "device": "gpu", "runtime": {"streams": 2}})
    result = subprocess.run([sys.executable, "-m", "seqtrain", "run", str(config), "--run-dir",
                             str(tmp_path / "gpu"), "--quiet"], env=gpu_env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "gpu" / "summary.json").read_text())
    assert summary["speed_settings"]["streams"] == 1
    assert summary["speed_settings"]["recurrent_loop"] == "keras"  # cuDNN where it can
    assert summary["speed_settings"]["threads"]["intra_op"] == 0  # not forced to 1
