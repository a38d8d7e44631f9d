"""Batch streams: each batch split into parts that run through the model side by side.

A recurrent layer is a chain of small matrix products, one per time step, each waiting for
the last. On a CPU, one such product is too small for TensorFlow to spread well over
several cores. The sequences of a batch are independent, though: split into one part per
core, each part runs through the whole model (its recurrent loops on one thread each,
`intra_op_threads: 1`, and its head), the parts run at once, and only the model's outputs
are joined. The gradients are the same sums in another order, and dropout uses the unsplit
model's masks, drawn for the whole batch. How many streams `auto` picks is
`seqtrain.tuning.resolve`'s choice.

The split is installed as the model instance's `call`, through `internals`: the saved
model stays a plain Keras model, and loads without it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from seqtrain.models import recurrent_layers
from seqtrain.tuning import internals

if TYPE_CHECKING:
    import keras


def install(model: keras.Model, streams: int) -> keras.Model:
    """Run `model` on each batch as `streams` parts side by side (see the module's docstring)."""
    if streams > 1 and not internals.has_own_call(model):
        internals.set_call(model, _streamed(model, model.call, streams))
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
    cells = [layer.cell for layer in recurrent_layers(model)]
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
            drawn["input"] = cell.get_dropout_mask(step)
        if cell.recurrent_dropout > 0:
            state = tf.zeros((batch, cell.units), cell.compute_dtype)
            drawn["recurrent"] = cell.get_recurrent_dropout_mask(state)
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
                    # `RNN.call` uses, then clears them
                    internals.set_dropout_masks(cell, {name: rows[k]
                                                       for name, rows in of_cell.items()})
                outputs.append(call(pieces[k], training=training, mask=input_masks[k]))
        finally:
            for cell in cells:
                cell.reset_dropout_mask()
                cell.reset_recurrent_dropout_mask()
        return tf.nest.map_structure(lambda *parts_of: tf.concat(parts_of, 0), *outputs)

    return streamed
