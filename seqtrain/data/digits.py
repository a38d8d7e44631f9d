"""The shifted-digit task: reproduce the digit seen `shift` steps earlier.

Each sample is `sequence_length` random digits; the target at step t is the input digit
at step t - shift. The first `shift` steps have nothing to recall, so they get sample
weight 0 and count neither in the loss nor in the accuracy. With `mode: recall` there is
one target per sequence instead: the digit `shift` steps before the last one, which must
be held in memory while the rest of the sequence goes by.

`layout: seed` is the classic blog example instead: length-1 sequences and
`y = np.roll(x, shift)` across *samples*, so each target is another sample's digit and no
model can beat chance (1 / num_classes). It is kept to show why the sequence layout exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from seqtrain.data.registry import (
    Dataset,
    GeneratedTaskParams,
    Split,
    TaskSpec,
    classification_baseline,
    integer_array,
    load_npz,
    register_reader,
    register_task,
    split_arrays,
)
from seqtrain.errors import DataError
from seqtrain.fields import NonNegativeInt, PositiveInt

if TYPE_CHECKING:
    import numpy as np


class ShiftedDigitParams(GeneratedTaskParams):
    """Parameters of `task: shifted_digit`."""

    task: Literal["shifted_digit"] = Field("shifted_digit", description="Task name.")
    layout: Literal["sequence", "seed"] = Field(
        "sequence",
        description="sequence: recall within each sequence; seed: the classic "
        "np.roll-across-samples example, which sits at chance level.",
    )
    sequence_length: PositiveInt = Field(20, description="Steps per sequence.")
    shift: NonNegativeInt = Field(1, description="How many steps back the target digit is.")
    num_classes: Annotated[int, Field(strict=True, ge=2)] = Field(
        10, description="Number of distinct digits (symbols), at least 2."
    )
    encoding: Literal["onehot", "scalar"] = Field(
        "onehot", description="onehot: num_classes features; scalar: the raw digit as 1 float."
    )
    mode: Literal["every_step", "recall"] = Field(
        "every_step", description="every_step: a target at every step; recall: one target "
        "per sequence, the digit `shift` steps before the last."
    )

    @field_validator("mode")
    @classmethod
    def _recall_needs_sequences(cls, value: str, info: ValidationInfo) -> str:
        if value == "recall" and info.data.get("layout") == "seed":
            raise ValueError("mode 'recall' needs layout 'sequence' (the seed layout has "
                             "length-1 sequences)")
        return value

    def task_kind(self) -> str:
        return "classification"

    def per_step(self) -> bool:
        return self.mode == "every_step"

    def vocabulary_size(self) -> int:
        return self.num_classes if self.encoding == "onehot" else 0

    def sequence_shape(self) -> tuple[int, int]:
        return self.sequence_length, self.vocabulary_size() or 1

    @field_validator("sequence_length")
    @classmethod
    def _seed_layout_is_length_one(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("layout") == "seed" and value != 1:
            raise ValueError(f"layout 'seed' uses length-1 sequences, got {value}; set it to 1")
        return value

    @field_validator("shift")
    @classmethod
    def _shift_leaves_a_target(cls, value: int, info: ValidationInfo) -> int:
        length = info.data.get("sequence_length")
        if info.data.get("layout") == "sequence" and length is not None and value >= length:
            raise ValueError(
                f"shift must be smaller than sequence_length ({length}) so that some step "
                f"has a target, got {value}"
            )
        return value


def encode(digits: np.ndarray, encoding: str, num_classes: int) -> np.ndarray:
    """Digits (N, T) as float32 model input: one-hot (N, T, C) or scalar (N, T, 1)."""
    import numpy as np

    if encoding == "onehot":
        return np.eye(num_classes, dtype=np.float32)[digits]
    return digits.astype(np.float32)[..., np.newaxis]


def targets_of(digits: np.ndarray, params: ShiftedDigitParams
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """The targets of digit sequences (N, T) and their sample weights, as the task defines them."""
    import numpy as np

    if params.layout == "seed":
        # The classic mistake, kept on purpose: rolling along the sample axis pairs each
        # input with the previous sample's digit, which it cannot see.
        return np.roll(digits, params.shift, axis=0), None
    if params.mode == "recall":
        return digits[:, digits.shape[1] - 1 - params.shift], None
    targets = np.roll(digits, params.shift, axis=1)
    # The first `shift` targets wrapped around from the end: weight 0 hides them.
    targets[:, : params.shift] = 0
    sample_weight = np.ones(digits.shape, dtype=np.float32)
    sample_weight[:, : params.shift] = 0.0
    return targets, sample_weight


@register_task("shifted_digit", ShiftedDigitParams)
def shifted_digit(params: ShiftedDigitParams, seed: int) -> Dataset:
    """Generate the shifted-digit splits from `seed` alone."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (params.num_samples, params.sequence_length)
    digits = rng.integers(0, params.num_classes, size=shape, dtype=np.int32)
    targets, sample_weight = targets_of(digits, params)
    x = encode(digits, params.encoding, params.num_classes)
    spec = TaskSpec(
        timesteps=params.sequence_length,
        features=x.shape[-1],
        per_step=params.mode == "every_step",
        num_classes=params.num_classes,
        vocabulary=params.vocabulary_size(),
    )
    train, val, test = split_arrays(x, targets, sample_weight, params.split)
    uniform = np.full(test.y.shape + (params.num_classes,), 1 / params.num_classes)
    baseline = classification_baseline("chance: every digit equally likely", uniform, test)
    inputs = {"source": "npz", "x": "x", "encoding": params.encoding,
              "vocabulary": params.num_classes,
              "reading": [f"array 'x' of an .npz file: (N, T) digits 0..{params.num_classes - 1}"]}
    if params.encoding == "scalar":
        inputs["reading"].append("feed each digit as one float32 feature (N, T, 1)")
    return Dataset(spec=spec, train=train, val=val, test=test, baseline=baseline,
                   preprocessing={"input": inputs})


@register_reader("shifted_digit")
def read_digits(params: ShiftedDigitParams, path: Path, preprocessing: dict,
                targets: bool = False) -> Split:
    """`x`: (N, T) digits; their targets follow from them as the task defines them."""
    digits = integer_array(load_npz(path, what=""), "x", path, 2, params.num_classes, "digits")
    if params.mode == "recall" and digits.shape[1] <= params.shift:
        raise DataError(f"{path}: array 'x' has {digits.shape[1]} steps; recall of the digit "
                        f"{params.shift} steps before the last needs more than {params.shift}")
    y, sample_weight = targets_of(digits, params)
    return Split(encode(digits, params.encoding, params.num_classes), y, sample_weight)
