"""Parity: the XOR of a bit sequence, running (every step) or final (once per sequence)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

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
from seqtrain.fields import PositiveInt

if TYPE_CHECKING:
    import numpy as np


class ParityParams(GeneratedTaskParams):
    """Parameters of `task: parity`."""

    task: Literal["parity"] = Field("parity", description="Task name.")
    sequence_length: PositiveInt = Field(20, description="Bits per sequence.")
    mode: Literal["running", "final"] = Field(
        "running", description="running: the parity so far at every step; final: once, at the "
        "end."
    )

    def task_kind(self) -> str:
        return "classification"

    def per_step(self) -> bool:
        return self.mode == "running"

    def sequence_shape(self) -> tuple[int, int]:
        return self.sequence_length, 1


@register_task("parity", ParityParams)
def parity(params: ParityParams, seed: int) -> Dataset:
    """Random bits as one float feature; targets are their parities (2 classes).

    Guessing scores 0.5 accuracy and a cross-entropy of ln 2.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (params.num_samples, params.sequence_length), dtype=np.int32)
    train, val, test = split_arrays(*_arrays(bits, params), None, params.split)
    spec = TaskSpec(timesteps=params.sequence_length, features=1,
                    per_step=params.mode == "running", num_classes=2)
    baseline = classification_baseline("a coin flip", np.full(test.y.shape + (2,), 0.5), test)
    inputs = {"source": "npz", "x": "x", "encoding": "scalar",
              "reading": ["array 'x' of an .npz file: (N, T) bits 0 or 1, fed as one float32 "
                          "feature (N, T, 1)"]}
    return Dataset(spec=spec, train=train, val=val, test=test, baseline=baseline,
                   preprocessing={"input": inputs})


def _arrays(bits: np.ndarray, params: ParityParams) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and targets of bit sequences (N, T)."""
    import numpy as np

    running = np.cumsum(bits, axis=1) % 2
    targets = running if params.mode == "running" else running[:, -1]
    return bits.astype(np.float32)[..., None], targets.astype(np.int32)


@register_reader("parity")
def read_bits(params: ParityParams, path: Path, preprocessing: dict,
              targets: bool = False) -> Split:
    """`x`: (N, T) bits; their parities are the targets."""
    bits = integer_array(load_npz(path, what=""), "x", path, 2, 2, "bits")
    return Split(*_arrays(bits, params), None)
