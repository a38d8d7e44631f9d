"""seqtrain's recurrent step: Keras's arithmetic forward, the same gradients, plain Keras saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqtrain.models import recurrent_layers
from seqtrain.tuning import loops, streams
from tests.conftest import TINY, invoke, write_config
from tests.test_streams import config


def test_auto_takes_seqtrains_step_where_keras_runs_implementation_2():
    assert loops.resolve(config()) == "seqtrain"
    assert loops.resolve(config(model={"cell": "gru", "units": 8, "reset_after": False})) \
        == "seqtrain"
    assert loops.resolve(config(model={"cell": "simple_rnn", "recurrent_dropout": 0.2})) \
        == "seqtrain"
    # Keras runs an LSTM or GRU with recurrent dropout per gate (implementation 1)
    assert loops.resolve(config(model={"cell": "lstm", "recurrent_dropout": 0.2})) == "keras"
    assert loops.resolve(config(model={"cell": "gru", "recurrent_dropout": 0.2})) == "keras"
    assert loops.resolve(config(precision="mixed_bfloat16")) == "keras"
    assert loops.resolve(config(runtime={"recurrent_loop": "keras"})) == "keras"


def test_a_bad_recurrent_loop_is_refused(tmp_path: Path):
    result = invoke("validate", write_config(tmp_path, {**TINY,
                                                        "runtime": {"recurrent_loop": "fast"}}))
    assert result.exit_code == 2, result.stderr
    assert "runtime.recurrent_loop (line " in result.stderr
    assert "got 'fast'; expected one of: auto, keras" in result.stderr


def _models(layers, count: int = 1):
    """Two copies of `layers()`, same weights and dropout seeds: seqtrain's step, Keras's."""
    import keras

    ours, theirs = keras.Sequential(layers()), keras.Sequential(layers())
    theirs.set_weights(ours.get_weights())
    for mine, other in zip(ours.variables, theirs.variables, strict=True):
        other.assign(mine)  # the seed generators' states too: the same dropout masks
    streams.install(loops.install(ours), count)
    installed = [layer for layer in recurrent_layers(ours) if "inner_loop" in vars(layer)]
    return ours, theirs, installed


def _lstm_gru_simple():
    import keras

    return [keras.Input((None, 3)), keras.layers.Masking(-1.0),
            keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True, dropout=0.3)),
            keras.layers.GRU(5, return_sequences=True, dropout=0.2),
            keras.layers.GRU(4, return_sequences=True, reset_after=False, go_backwards=True),
            keras.layers.SimpleRNN(4, dropout=0.2, recurrent_dropout=0.3),
            keras.layers.Dense(2, activation="softmax")]


@pytest.mark.parametrize("count", [1, 2])
def test_seqtrains_step_computes_what_kerass_does(count: int):
    import keras
    import tensorflow as tf

    ours, theirs, installed = _models(_lstm_gru_simple, count)
    assert len(installed) == 5  # both halves of the Bidirectional, 2 GRUs, the SimpleRNN
    x = np.random.default_rng(count).random((5, 7, 3), dtype="float32")
    x[0, 4:] = -1.0  # padding the mask hides
    y = np.arange(5) % 2
    if count == 1:  # the same operations in the same order: the same bits
        np.testing.assert_array_equal(ours(x), theirs(x))
    results = []
    for model in (ours, theirs):
        with tf.GradientTape() as tape:  # training: dropout on, same masks from same seeds
            out = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, out))
        results.append((out, tape.gradient(loss, model.trainable_variables)))
    (out, grads), (plain_out, plain_grads) = results
    np.testing.assert_allclose(out, plain_out, atol=1e-6)
    assert len(grads) == len(plain_grads) == 17
    for ours_grad, theirs_grad in zip(grads, plain_grads, strict=True):
        np.testing.assert_allclose(ours_grad, theirs_grad, rtol=1e-5, atol=1e-6)


def test_training_folds_the_bias_and_stays_kerass_numbers():
    """In training, the bias rides in the products (LSTM, GRU); without a bias, Keras's step."""
    import keras
    import tensorflow as tf

    def layers():
        return [keras.Input((None, 3)),
                keras.layers.LSTM(5, return_sequences=True, dropout=0.2),
                keras.layers.LSTM(4, return_sequences=True, use_bias=False),
                keras.layers.GRU(4, return_sequences=True, reset_after=False, dropout=0.3),
                keras.layers.GRU(3, use_bias=False),
                keras.layers.Dense(2)]

    ours, theirs, installed = _models(layers)
    assert [loops._folds_bias(layer.cell) for layer in installed] == [True, False, True, False]
    x = np.random.default_rng(3).random((6, 8, 3), dtype="float32")
    results = []
    for model in (ours, theirs):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = tf.reduce_mean(out ** 2)
        results.append((out, tape.gradient(loss, model.trainable_variables)))
    (out, grads), (plain_out, plain_grads) = results
    np.testing.assert_allclose(out, plain_out, atol=1e-6)
    for ours_grad, theirs_grad in zip(grads, plain_grads, strict=True):
        np.testing.assert_allclose(ours_grad, theirs_grad, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours(x), theirs(x))  # inference: Keras's operations


def _loop_body_operations(model, x) -> int:
    """Operations in the bodies of the while loops (forward and backward) of a training step."""
    import tensorflow as tf

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x, training=True) ** 2)
        return tape.gradient(loss, model.trainable_variables)

    graph = step.get_concrete_function(tf.TensorSpec(x.shape, x.dtype)).graph
    return sum(1 for function in graph.as_graph_def().library.function
               if "while_body" in function.signature.name
               for node in function.node_def if node.op not in ("Identity", "NoOp", "Const"))


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_the_joined_products_run_fewer_operations_per_step(cell: str, monkeypatch):
    """What `_training_step` saves against `_step` in training (docs/performance.md)."""
    import keras

    def layers():
        return [keras.Input((6, 3)), getattr(keras.layers, cell)(8, return_sequences=True),
                keras.layers.Dense(2)]

    joined, keras_loop, _ = _models(layers)
    x = np.random.default_rng(0).random((4, 6, 3), dtype="float32")
    counts = {"joined": _loop_body_operations(joined, x),
              "keras": _loop_body_operations(keras_loop, x)}
    monkeypatch.setattr(loops, "_folds_bias", lambda _: False)  # `_step` in training too
    counts["step"] = _loop_body_operations(_models(layers)[0], x)
    assert counts["joined"] < counts["step"] < counts["keras"], counts


def test_layers_keras_runs_per_gate_keep_kerass_loop():
    import keras

    def layers():
        return [keras.Input((None, 3)),
                keras.layers.LSTM(4, recurrent_dropout=0.2, return_sequences=True),
                keras.layers.GRU(4, implementation=1), keras.layers.Dense(2)]

    assert _models(layers)[2] == []


def test_a_model_trained_with_it_saves_and_loads_as_plain_keras(tmp_path: Path):
    import keras

    def layers():
        return [keras.Input((None, 3)), keras.layers.LSTM(4, return_sequences=True),
                keras.layers.GRU(3), keras.layers.Dense(2, activation="softmax")]

    ours, _, installed = _models(layers)
    assert len(installed) == 2
    ours.compile("adam", "sparse_categorical_crossentropy", jit_compile=False)
    x = np.random.default_rng(0).random((9, 5, 3), dtype="float32")
    before = ours.get_weights()
    history = ours.fit(x, np.arange(9) % 2, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.array_equal(a, b) for a, b in zip(before, ours.get_weights(), strict=True))
    path = tmp_path / "model.keras"
    ours.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert not any("inner_loop" in vars(layer) for layer in recurrent_layers(loaded))
    np.testing.assert_array_equal(loaded(x), ours(x))
