"""A noisy sum of sines: forecast the next values of a time series from a window."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from seqtrain.data.registry import (
    Dataset,
    GeneratedTaskParams,
    Split,
    TaskSpec,
    load_npz,
    npz_array,
    register_reader,
    register_task,
    regression_baseline,
    split_arrays,
)
from seqtrain.errors import DataError
from seqtrain.fields import NonNegativeFloat, PositiveInt


class SineParams(GeneratedTaskParams):
    """Parameters of `task: sine`."""

    task: Literal["sine"] = Field("sine", description="Task name.")
    sequence_length: PositiveInt = Field(50, description="Steps in each input window.")
    horizon: PositiveInt = Field(1, description="Values to forecast after the window.")
    num_components: PositiveInt = Field(3, description="Sines summed into the series.")
    noise: NonNegativeFloat = Field(0.05, description="Standard deviation of the added noise.")
    num_samples: PositiveInt = Field(5000, description="Number of windows generated.")

    def task_kind(self) -> str:
        return "regression"

    def per_step(self) -> bool:
        return False

    def sequence_shape(self) -> tuple[int, int]:
        return self.sequence_length + self.horizon, 1


@register_task("sine", SineParams)
def sine(params: SineParams, seed: int) -> Dataset:
    """Forecast the next `horizon` values of a noisy sum of sines from a window of it.

    Each window: `num_components` sines with frequencies fixed by the seed and random
    phases, plus Gaussian noise. The persistence baseline repeats the last value.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n, length, horizon = params.num_samples, params.sequence_length, params.horizon
    frequencies = rng.uniform(0.02, 0.2, params.num_components)  # cycles per step
    phases = rng.uniform(0, 2 * np.pi, (n, params.num_components, 1))
    steps = np.arange(length + horizon)
    waves = np.sin(2 * np.pi * frequencies[None, :, None] * steps + phases).sum(axis=1)
    series = (waves / params.num_components
              + rng.normal(0, params.noise, waves.shape)).astype(np.float32)
    x, y = series[:, :length, None], series[:, length:]
    train, val, test = split_arrays(x, y, None, params.split)
    spec = TaskSpec(timesteps=length, features=1, per_step=False, kind="regression",
                    output_dim=horizon)
    baseline = regression_baseline("persistence: the last value again", test.x[:, -1:, 0], test)
    inputs = {"source": "npz", "x": "x",
              "reading": ["array 'x' of an .npz file: (N, T) values, fed as one float32 "
                          "feature (N, T, 1)"]}
    output = {"names": [f"t+{h}" for h in range(1, horizon + 1)]}
    return Dataset(spec=spec, train=train, val=val, test=test, baseline=baseline,
                   preprocessing={"input": inputs, "output": output})


@register_reader("sine")
def read_sine(params: SineParams, path: Path, preprocessing: dict,
              targets: bool = False) -> Split:
    """`x`: (N, T) values; with `targets`, `y`: (N, horizon) values that follow them."""
    import numpy as np

    arrays = load_npz(path, what="")
    x = npz_array(arrays, "x", path)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: array 'x' has shape {x.shape} and dtype {x.dtype}; expected "
                        "(N, T) numbers")
    if not np.isfinite(x).all():
        row, step = map(int, np.argwhere(~np.isfinite(x))[0])
        raise DataError(f"{path}: array 'x' has NaN or inf (first in sequence {row}, step "
                        f"{step}); this task reads finite numbers")
    y = None
    if targets:
        y = npz_array(arrays, "y", path)
        if (y.shape != (len(x), params.horizon) or not np.issubdtype(y.dtype, np.number)
                or not np.isfinite(y).all()):
            raise DataError(f"{path}: array 'y' has shape {y.shape}; expected ({len(x)}, "
                            f"{params.horizon}) finite numbers: the {params.horizon} values "
                            "after each window")
        y = y.astype(np.float32)
    return Split(x.astype(np.float32)[..., None], y, None)
