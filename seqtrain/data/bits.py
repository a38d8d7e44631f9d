"""Parity: the XOR of a bit sequence, running (every step) or final (once per sequence)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from seqtrain.data.registry import (
    Dataset,
    GeneratedTaskParams,
    TaskSpec,
    classification_baseline,
    register_task,
    split_arrays,
)
from seqtrain.fields import PositiveInt


class ParityParams(GeneratedTaskParams):
    """Parameters of `task: parity`."""

    task: Literal["parity"] = Field("parity", description="Task name.")
    sequence_length: PositiveInt = Field(20, description="Bits per sequence.")
    mode: Literal["running", "final"] = Field(
        "running", description="running: the parity so far at every step; final: once, at the "
        "end."
    )


@register_task("parity", ParityParams)
def parity(params: ParityParams, seed: int) -> Dataset:
    """Random bits as one float feature; targets are their parities (2 classes).

    Guessing scores 0.5 accuracy and a cross-entropy of ln 2.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (params.num_samples, params.sequence_length), dtype=np.int32)
    running = np.cumsum(bits, axis=1) % 2
    targets = running if params.mode == "running" else running[:, -1]
    x = bits.astype(np.float32)[..., None]
    train, val, test = split_arrays(x, targets.astype(np.int32), None, params.split)
    spec = TaskSpec(timesteps=params.sequence_length, features=1,
                    per_step=params.mode == "running", num_classes=2)
    baseline = classification_baseline("a coin flip", np.full(test.y.shape + (2,), 0.5), test)
    return Dataset(spec=spec, train=train, val=val, test=test, baseline=baseline)
