"""The cells are the published equations: LSTM and GRU recomputed in NumPy from trained
weights match Keras' outputs."""

from __future__ import annotations

import numpy as np
import pytest

from seqtrain import runtime

UNITS, FEATURES, STEPS = 5, 3, 7


@pytest.fixture(autouse=True, scope="module")
def _tensorflow():
    runtime.select_device("cpu")


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def trained(layer):
    """`layer` after a few real training steps, so the weights are not just initial ones."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((STEPS, FEATURES)), layer])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(64, STEPS, FEATURES)).astype("float32"),
              rng.normal(size=(64, STEPS, UNITS)).astype("float32"), epochs=3, verbose=0)
    return model


def lstm_numpy(x, kernel, recurrent, bias):
    """i, f, g, o gates; c_t = f * c + i * g; h_t = o * tanh(c_t) (Hochreiter & Schmidhuber
    1997, with the forget gate of Gers et al. 2000), Keras' gate order i, f, g, o."""
    h = c = np.zeros((x.shape[0], UNITS))
    outputs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = np.split(z, 4, axis=-1)
        i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
        c = f * c + i * g
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def gru_numpy(x, kernel, recurrent, bias, reset_after):
    """z (update) and r (reset) gates and the candidate; h_t = z * h + (1 - z) * candidate.

    reset_after=True: candidate = tanh(x W_h + b_h + r * (h U_h + b'_h)), the cuDNN form.
    reset_after=False: candidate = tanh(x W_h + (r * h) U_h + b_h), Cho et al. (2014).
    """
    h = np.zeros((x.shape[0], UNITS))
    input_bias, recurrent_bias = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
    outputs = []
    for t in range(x.shape[1]):
        xz, xr, xh = np.split(x[:, t] @ kernel + input_bias, 3, axis=-1)
        uz, ur, uh = np.split(recurrent, 3, axis=-1)
        rz, rr, rh = np.split(recurrent_bias, 3, axis=-1)
        z = sigmoid(xz + h @ uz + rz)
        r = sigmoid(xr + h @ ur + rr)
        if reset_after:
            candidate = np.tanh(xh + r * (h @ uh + rh))
        else:
            candidate = np.tanh(xh + (r * h) @ uh)
        h = z * h + (1 - z) * candidate
        outputs.append(h)
    return np.stack(outputs, axis=1)


def random_sequences(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(4, STEPS, FEATURES)).astype("float32")


def test_keras_lstm_computes_the_lstm_equations():
    import keras

    model = trained(keras.layers.LSTM(UNITS, return_sequences=True))
    kernel, recurrent, bias = (w.astype("float64") for w in model.layers[0].get_weights())
    for seed in (1, 2, 3):
        x = random_sequences(seed)
        np.testing.assert_allclose(lstm_numpy(x, kernel, recurrent, bias),
                                   model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("reset_after", [True, False])
def test_keras_gru_computes_the_gru_equations(reset_after: bool):
    import keras

    model = trained(keras.layers.GRU(UNITS, return_sequences=True, reset_after=reset_after))
    kernel, recurrent, bias = (w.astype("float64") for w in model.layers[0].get_weights())
    assert bias.shape == ((2, 3 * UNITS) if reset_after else (3 * UNITS,))
    for seed in (1, 2, 3):
        x = random_sequences(seed)
        np.testing.assert_allclose(gru_numpy(x, kernel, recurrent, bias, reset_after),
                                   model.predict(x, verbose=0), atol=1e-5)
