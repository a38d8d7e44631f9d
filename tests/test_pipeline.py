"""The training input pipeline: a new order every epoch, the same order for the same epoch."""

from __future__ import annotations

import numpy as np
import pytest

from seqtrain import runtime
from seqtrain.data import Split


@pytest.fixture(autouse=True, scope="module")
def _tensorflow():
    runtime.select_device("cpu")


def batches(dataset) -> list[np.ndarray]:
    return [np.asarray(batch[0]) for batch in dataset]


def split(n: int = 10) -> Split:
    x = np.arange(n, dtype=np.float32)[:, None, None]
    return Split(x=x, y=np.arange(n)[:, None], sample_weight=np.ones((n, 1), np.float32))


def test_every_epoch_has_its_own_order_derived_from_seed_and_epoch():
    from seqtrain.pipeline import EpochOrder

    order, again = EpochOrder(100, seed=3, shuffle=True), EpochOrder(100, seed=3, shuffle=True)
    epochs = [order.indices(e) for e in range(4)]
    assert len({tuple(e) for e in epochs}) == 4
    assert all(sorted(e) == list(range(100)) for e in epochs)
    np.testing.assert_array_equal(epochs[2], again.indices(2))
    assert not np.array_equal(epochs[0], EpochOrder(100, seed=4, shuffle=True).indices(0))
    np.testing.assert_array_equal(EpochOrder(5, 3, shuffle=False).indices(7), np.arange(5))


def test_the_dataset_reads_the_current_epoch_each_time_it_is_iterated():
    from seqtrain.pipeline import EpochOrder, training_dataset

    order = EpochOrder(10, seed=1, shuffle=True)
    dataset = training_dataset(split(), batch_size=4, order=order)
    order.epoch = 0
    first = np.concatenate(batches(dataset)).ravel()
    order.epoch = 1
    second = np.concatenate(batches(dataset)).ravel()
    np.testing.assert_array_equal(first, order.indices(0))
    np.testing.assert_array_equal(second, order.indices(1))
    assert [len(b) for b in batches(dataset)] == [4, 4, 2]  # the last batch may be short
    assert int(dataset.cardinality()) == 3


def test_a_resumed_epoch_skips_the_batches_already_trained():
    from seqtrain.pipeline import EpochOrder, training_dataset

    order = EpochOrder(10, seed=1, shuffle=True)
    order.epoch = 5
    rest = batches(training_dataset(split(), batch_size=4, order=order, skip_batches=2))
    np.testing.assert_array_equal(np.concatenate(rest).ravel(), order.indices(5)[8:])


def test_every_dataset_runs_without_tf_data_autotuning():
    """Autotuning's model thread stalled iterator teardown a second per epoch (performance.md)."""
    from seqtrain.pipeline import EpochOrder, evaluation_dataset, training_dataset

    data = split(10)
    for dataset in (training_dataset(data, 4, EpochOrder(10, 0, True)),
                    evaluation_dataset(data, 4)):
        assert dataset.options().autotune.enabled is False
    assert [b.tolist() for b in batches(evaluation_dataset(data, 4))] == [
        [[[0.0]], [[1.0]], [[2.0]], [[3.0]]], [[[4.0]], [[5.0]], [[6.0]], [[7.0]]],
        [[[8.0]], [[9.0]]]]


def test_the_training_spec_is_the_training_datasets():
    from seqtrain.pipeline import EpochOrder, training_dataset, training_spec

    data = split(10)
    masked = Split(x=data.x, y=data.y.astype(np.int32), sample_weight=data.sample_weight)
    for each in (data, masked):
        dataset = training_dataset(each, 4, EpochOrder(10, 0, True), skip_batches=1)
        assert training_spec(each) == dataset.element_spec
