"""Batch streams: each batch split into parts that run through the model side by side.

A recurrent layer is a chain of small matrix products, one per time step, each waiting for
the last. On a CPU, one such product (128 sequences x 128 units by 128 x 512, an LSTM step)
is too small for TensorFlow to spread well over several cores. The sequences of a batch
are independent, though: split into one part per core, each part runs through the whole
model (its recurrent loops on one thread each, `intra_op_threads: 1`, and its head), the
parts run at once, and only the model's outputs are joined. The gradients are the same sums
in another order, and dropout uses the unsplit model's masks, drawn for the whole batch.

An earlier release split each recurrent layer instead, and joined the parts' full sequence
outputs before the head: on 2 cores that join, a 3 MB copy at memory speed, was the largest
piece of the time only one core worked (`benchmarks/epoch_profile.py`, README).

The split is installed on the model instance's `call`: the saved model stays a plain Keras
model, and loads without it.
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
    """Run `model` on each batch as `streams` parts side by side (see the module's docstring)."""
    if streams > 1 and "call" not in vars(model):
        model.call = _streamed(model, model.call, streams)
    return model


def _split(tensor, parts: int) -> list:
    """`tensor` cut along the batch into `parts` near-equal pieces (some may be empty)."""
    import tensorflow as tf

    size = tf.shape(tensor)[0]
    bounds = [size * k // parts for k in range(parts + 1)]
    return tf.split(tensor, [bounds[k + 1] - bounds[k] for k in range(parts)], axis=0)


def _split_mask(mask, parts: int) -> list:
    """A dropout mask, or the list of per-gate masks some cells keep, cut like the batch."""
    if isinstance(mask, (list, tuple)):
        return [list(piece) for piece in zip(*(_split(m, parts) for m in mask), strict=True)]
    return _split(mask, parts)


def _dropout_cells(model: keras.Model) -> list:
    """The recurrent cells of `model` (inside `Bidirectional` too) that draw dropout masks."""
    import keras

    cells = [layer.cell for layer in model._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.RNN)]
    return [cell for cell in cells if hasattr(cell, "get_dropout_mask")  # DropoutRNNCell
            and (cell.dropout > 0 or cell.recurrent_dropout > 0)]


def _whole_batch_masks(cells: list, batch) -> list[dict]:
    """Each cell's dropout masks for the whole batch, drawn as `RNN.call` draws them.

    Every call of a recurrent layer draws its masks from its cell's seed generator, the
    input mask first, for the rows it is given. Drawn here once for the whole batch, in that
    order, they are the unsplit model's masks, and each part takes its own rows.
    """
    import tensorflow as tf

    masks = []
    for cell in cells:
        drawn = {}
        if cell.dropout > 0:
            step = tf.zeros((batch, cell.kernel.shape[0]), cell.compute_dtype)
            drawn["_dropout_mask"] = cell.get_dropout_mask(step)
        if cell.recurrent_dropout > 0:
            state = tf.zeros((batch, cell.units), cell.compute_dtype)
            drawn["_recurrent_dropout_mask"] = cell.get_recurrent_dropout_mask(state)
        cell.reset_dropout_mask()
        cell.reset_recurrent_dropout_mask()
        masks.append(drawn)
    return masks


def _streamed(model: keras.Model, call, parts: int):
    """`model.call` run once per part of the batch; the outputs joined in order."""
    import tensorflow as tf

    cells = _dropout_cells(model)

    @functools.wraps(call)
    def streamed(inputs, training=None, mask=None):
        known = inputs.shape[0]  # a batch size fixed when traced: no empty parts then
        count = parts if known is None else min(parts, known)
        if count < 2:
            return call(inputs, training=training, mask=mask)
        dropout = [{name: _split_mask(value, count) for name, value in of_cell.items()}
                   for of_cell in _whole_batch_masks(cells, tf.shape(inputs)[0])]
        pieces = _split(inputs, count)
        input_masks = _split(mask, count) if mask is not None else [None] * count
        outputs = []
        try:
            for k in range(count):
                for cell, of_cell in zip(cells, dropout, strict=True):
                    for name, rows in of_cell.items():
                        setattr(cell, name, rows[k])  # `RNN.call` uses, then clears them
                outputs.append(call(pieces[k], training=training, mask=input_masks[k]))
        finally:
            for cell in cells:
                cell.reset_dropout_mask()
                cell.reset_recurrent_dropout_mask()
        return tf.nest.map_structure(lambda *parts_of: tf.concat(parts_of, 0), *outputs)

    return streamed
