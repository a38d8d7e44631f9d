"""A noisy sum of sines: forecast the next values of a time series from a window."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from seqtrain.data.registry import (
    Dataset,
    GeneratedTaskParams,
    TaskSpec,
    register_task,
    regression_baseline,
    split_arrays,
)
from seqtrain.fields import Float, PositiveInt


class SineParams(GeneratedTaskParams):
    """Parameters of `task: sine`."""

    task: Literal["sine"] = Field("sine", description="Task name.")
    sequence_length: PositiveInt = Field(50, description="Steps in each input window.")
    horizon: PositiveInt = Field(1, description="Values to forecast after the window.")
    num_components: PositiveInt = Field(3, description="Sines summed into the series.")
    noise: Float = Field(0.05, ge=0.0, description="Standard deviation of the added noise.")
    num_samples: PositiveInt = Field(5000, description="Number of windows generated.")


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
    return Dataset(spec=spec, train=train, val=val, test=test, baseline=baseline)
