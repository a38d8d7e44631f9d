"""The input pipelines: each training epoch's batch order comes from (seed, epoch) alone.

Keras' own shuffling of NumPy input draws from a stateful generator: under a fixed seed it
repeats one permutation every epoch, and a resumed process cannot know where the stream
was. Here epoch e always visits the samples in `default_rng([seed, e]).permutation(n)`,
so any epoch can be regenerated exactly, and a resume can skip the batches already done.

Every dataset here runs with tf.data's autotuning off and a fixed prefetch buffer. With it
on, each iterator starts a model thread that sleeps in a timed wait of up to about a second
between optimisations, and destroying the iterator (Keras makes a new one every epoch, for
training and for validation) blocks until that wait ends, idling the whole process for up
to a second in many epochs.

Imported only after `runtime.prepare()`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from seqtrain.data import Split

PREFETCH_BATCHES = 2  # a fixed buffer: tf.data autotuning is off (see above)


class EpochOrder(keras.callbacks.Callback):
    """Knows the epoch being trained, and gives that epoch's sample order.

    As a callback it follows `fit`: Keras calls `on_epoch_begin` before it creates the
    epoch's data iterator, so the iterator reads the new epoch's order.
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool):
        super().__init__()
        self.num_samples, self.seed, self.shuffle = num_samples, seed, shuffle
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """Sample indices of one epoch (default: the current one), in training order."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return np.arange(self.num_samples, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)


def training_dataset(split: Split, batch_size: int, order: EpochOrder,
                     skip_batches: int = 0) -> tf.data.Dataset:
    """Batches of `split` in `order`'s current epoch order, optionally skipping the first few.

    The arrays are held once, as tensors; each batch is gathered from them by index.
    """
    tensors = tuple(tf.constant(a) for a in split.arrays)
    start = skip_batches * batch_size

    def epoch_indices(_):
        indices = tf.numpy_function(lambda: order.indices()[start:], [], tf.int64, stateful=True)
        indices.set_shape([None])
        return tf.data.Dataset.from_tensor_slices(indices)

    dataset = (
        tf.data.Dataset.from_tensors(0)
        .flat_map(epoch_indices)
        .batch(batch_size)
        .map(lambda index: tuple(tf.gather(t, index) for t in tensors))
    )
    remaining = split.num_batches(batch_size) - skip_batches
    # flat_map hides the length; declaring it lets Keras size its progress and epochs.
    return _steady(dataset.apply(tf.data.experimental.assert_cardinality(remaining)))


def training_spec(split: Split) -> tuple:
    """The element spec of `training_dataset(split, ...)`, without building the dataset."""
    return tuple(tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype))
                 for a in split.arrays)


def evaluation_dataset(split: Split, batch_size: int) -> tf.data.Dataset:
    """Batches of `split` in stored order, with its sample weights if it has any."""
    return _steady(tf.data.Dataset.from_tensor_slices(split.arrays).batch(batch_size))


def _steady(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset`, prefetched by a fixed number of batches, with tf.data autotuning off."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(PREFETCH_BATCHES).with_options(options)
