"""Batch streams: each batch split into parts that run through the recurrent layers side by side.

A recurrent layer is a chain of small matrix products, one per time step, each waiting for
the last. On a CPU, one such product (128 sequences x 128 units by 128 x 512, an LSTM step)
is too small for TensorFlow to spread well over several cores. The sequences of a batch
are independent, though: split into one part per core, each part runs its own loop on one
thread (`intra_op_threads: 1`), and the parts run at once. The gradients are the same sums
in another order, and dropout uses the same per-sequence masks.

The split is installed on the layer instances' `inner_loop` (the step Keras hands to cuDNN
on a GPU): the saved model stays a plain Keras model, and loads without it.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from seqtrain.plan import GATES

if TYPE_CHECKING:
    import keras

    from seqtrain.config import ExperimentConfig

# `auto` splits a batch while one step's recurrent product, batch x units x gates * units
# multiply-adds, is within these bounds. Measured on 2 cores (`benchmarks/streams.py`,
# README), training speed split against whole: 1 Mi (LSTM, 64 units, batch 64) 1.05x, not
# worth the second loop's tracing (0.7 s); 2 Mi (64 units, batch 128) 1.40x; 4 Mi (128
# units, batch 64) 1.36x; 8 Mi (batch 128) 1.32x; 18 Mi (192 units) 1.28x; 24 Mi (GRU,
# 256 units) 1.12x; 32 Mi (LSTM, 256 units) 0.93x.
AUTO_MIN_PRODUCT = 2 * 2**20
AUTO_MAX_PRODUCT = 24 * 2**20
MIN_STREAM_SEQUENCES = 16  # `auto` gives no stream fewer sequences than this


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def step_product(config: ExperimentConfig) -> int:
    """Multiply-adds of the widest recurrent layer's per-step product `h @ U`."""
    width = max(config.model.layer_units)
    return config.train.batch_size * width * GATES[config.model.cell] * width


def resolve(config: ExperimentConfig, cores: int | None = None) -> int:
    """How many streams `config` trains with on a CPU (a GPU always runs one).

    `runtime.streams: auto` gives one stream per core, each of at least
    `MIN_STREAM_SEQUENCES` sequences, while the step product is between `AUTO_MIN_PRODUCT`
    and `AUTO_MAX_PRODUCT`; else one, and one under distribution: mirrored (the replicas
    split the batch already).
    """
    chosen = config.runtime.streams
    if chosen != "auto":
        return chosen
    if config.distribution != "none" or not (
            AUTO_MIN_PRODUCT <= step_product(config) <= AUTO_MAX_PRODUCT):
        return 1
    cores = usable_cores() if cores is None else cores
    return max(1, min(cores, config.train.batch_size // MIN_STREAM_SEQUENCES))


def one_thread_per_operation(config: ExperimentConfig, cores: int | None = None) -> bool:
    """Whether `config` trains with one thread per operation on a CPU (`intra_op_threads` 1).

    With batch streams, the streams are the parallelism. Without them, a step product up to
    `AUTO_MAX_PRODUCT` is still too small for TensorFlow to split well over the cores: one
    thread per operation leaves the other cores to the operations that do not wait on the
    chain (the weight gradients, the input pipeline). Measured on 2 cores, one stream, one
    thread per operation against TensorFlow's two (README, Benchmarks): the default
    experiment (LSTM 64, batch 64, 20 steps; 1 Mi) 1.01x to 1.29x in sequences per second;
    LSTM 128 at batch 64 1.23x, at batch 128 1.14x; GRU 128 1.29x; GRU 256 (24 Mi) 0.99x;
    LSTM 256 (32 Mi) 0.74x. Under distribution: mirrored, TensorFlow's choice is kept.
    """
    if config.distribution != "none":
        return False
    return resolve(config, cores) > 1 or step_product(config) <= AUTO_MAX_PRODUCT


def install(model: keras.Model, streams: int) -> keras.Model:
    """Run every recurrent layer of `model` (inside `Bidirectional` too) as `streams` parts."""
    import keras

    if streams > 1:
        for layer in model._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.RNN):
                layer.inner_loop = _streamed(layer, layer.inner_loop, streams)
    return model


def _split(tensor, parts: int) -> list:
    """`tensor` cut along the batch into `parts` near-equal pieces (some may be empty)."""
    import tensorflow as tf

    size = tf.shape(tensor)[0]
    bounds = [size * k // parts for k in range(parts + 1)]
    return tf.split(tensor, [bounds[k + 1] - bounds[k] for k in range(parts)], axis=0)


def _split_mask(mask, parts: int) -> list | None:
    """A dropout mask, or the list of per-gate masks some cells keep, cut like the batch."""
    if mask is None:
        return None
    if isinstance(mask, (list, tuple)):
        return [list(piece) for piece in zip(*(_split(m, parts) for m in mask), strict=True)]
    return _split(mask, parts)


_DROPOUT_MASKS = ("_dropout_mask", "_recurrent_dropout_mask")


def _streamed(layer: keras.layers.RNN, inner_loop, parts: int):
    """`layer.inner_loop` run once per part of the batch; the results joined in order."""
    import tensorflow as tf

    @functools.wraps(inner_loop)
    def loop(sequences, initial_state, mask, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        known = sequences.shape[0]  # a batch size fixed when traced: no empty parts then
        count = parts if known is None else min(parts, known)
        if count < 2:
            return inner_loop(sequences, initial_state, mask, training=training)
        cell = layer.cell
        # `RNN.call` draws the dropout masks for the whole batch before the loop; each part
        # takes its own rows of them.
        full = {name: getattr(cell, name, None) for name in _DROPOUT_MASKS}
        dropout = {name: _split_mask(value, count) for name, value in full.items()}
        inputs = _split(sequences, count)
        states = [_split(state, count) for state in initial_state]
        masks = _split(mask, count) if mask is not None else [None] * count
        results = []
        try:
            for k in range(count):
                for name, pieces in dropout.items():
                    if pieces is not None:
                        setattr(cell, name, pieces[k])
                results.append(inner_loop(inputs[k], [state[k] for state in states], masks[k],
                                          training=training))
        finally:
            for name, value in full.items():
                if value is not None:
                    setattr(cell, name, value)
        last, outputs, new_states = zip(*results, strict=True)
        return (tf.concat(last, 0), tf.concat(outputs, 0),
                [tf.concat(piece, 0) for piece in zip(*new_states, strict=True)])

    return loop
