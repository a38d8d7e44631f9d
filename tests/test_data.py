"""The shifted-digit task: shapes, the shift relation, masked steps, seeds and splits."""

from __future__ import annotations

import numpy as np
import pytest

from seqtrain.data import build_dataset, get_task
from seqtrain.data.digits import ShiftedDigitParams
from seqtrain.errors import SeqtrainError


def params(**changes) -> ShiftedDigitParams:
    base = {"task": "shifted_digit", "sequence_length": 12, "shift": 3, "num_classes": 5,
            "num_samples": 500}
    return ShiftedDigitParams.model_validate({**base, **changes})


def test_onehot_shapes_and_dtypes():
    data = build_dataset(params(), seed=1)
    assert data.train.x.shape == (400, 12, 5) and data.train.x.dtype == np.float32
    assert data.train.y.shape == (400, 12) and np.issubdtype(data.train.y.dtype, np.integer)
    assert data.train.sample_weight.shape == (400, 12)
    assert (len(data.train), len(data.val), len(data.test)) == (400, 50, 50)
    assert data.spec.timesteps == 12 and data.spec.features == 5
    assert data.spec.num_classes == 5 and data.spec.per_step
    assert set(np.unique(data.train.x)) == {0.0, 1.0}
    np.testing.assert_array_equal(data.train.x.sum(axis=-1), 1.0)


def test_scalar_encoding_is_the_raw_digit_as_one_float():
    onehot = build_dataset(params(), seed=1)
    scalar = build_dataset(params(encoding="scalar"), seed=1)
    assert scalar.train.x.shape == (400, 12, 1) and scalar.train.x.dtype == np.float32
    np.testing.assert_array_equal(scalar.train.x[..., 0], onehot.train.x.argmax(-1))
    assert scalar.spec.features == 1


@pytest.mark.parametrize("shift", [0, 1, 3, 11])
def test_the_target_is_the_input_digit_shift_steps_earlier(shift):
    data = build_dataset(params(shift=shift), seed=2)
    for split in (data.train, data.val, data.test):
        digits = split.x.argmax(-1)
        np.testing.assert_array_equal(split.y[:, shift:], digits[:, : 12 - shift])


def test_the_first_shift_steps_carry_no_weight_and_the_rest_full_weight():
    data = build_dataset(params(shift=3), seed=3)
    weights = data.train.sample_weight
    np.testing.assert_array_equal(weights[:, :3], 0.0)
    np.testing.assert_array_equal(weights[:, 3:], 1.0)


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data():
    first, again, other = (build_dataset(params(), seed=s) for s in (11, 11, 12))
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(first, name).x, getattr(again, name).x)
        np.testing.assert_array_equal(getattr(first, name).y, getattr(again, name).y)
    assert not np.array_equal(first.train.x, other.train.x)


def test_the_splits_are_disjoint_parts_of_one_sample():
    data = build_dataset(params(num_samples=1000, split={"train": 0.7, "val": 0.2, "test": 0.1}),
                         seed=4)
    assert (len(data.train), len(data.val), len(data.test)) == (700, 200, 100)
    rows = {row.tobytes() for split in (data.train, data.val, data.test) for row in split.y}
    assert len(rows) == 1000  # 5**9 possible target rows: a repeat would mean a leak


def test_the_seed_layout_rolls_across_samples_as_the_classic_example_does():
    data = build_dataset(params(layout="seed", sequence_length=1, shift=1, num_samples=100,
                                encoding="scalar"), seed=5)
    x = np.concatenate([data.train.x, data.val.x, data.test.x])[:, 0, 0].astype(int)
    y = np.concatenate([data.train.y, data.val.y, data.test.y])[:, 0]
    np.testing.assert_array_equal(y, np.roll(x, 1))
    assert data.train.sample_weight is None


def test_every_split_must_get_a_sample():
    with pytest.raises(ValueError, match="every split needs at least 1"):
        params(num_samples=5)


def test_an_unknown_task_name_suggests_the_closest():
    with pytest.raises(SeqtrainError, match="Did you mean 'shifted_digit'"):
        get_task("shifted_digits")


def test_cross_field_rules_apply_to_defaults_too():
    # shift keeps its default of 1, which a length-1 sequence cannot satisfy.
    with pytest.raises(ValueError, match="shift must be smaller than sequence_length"):
        ShiftedDigitParams.model_validate({"task": "shifted_digit", "sequence_length": 1})
