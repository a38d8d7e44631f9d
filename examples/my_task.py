"""Your own task: a dataset builder registered under a name, trained from Python.

    python examples/my_task.py                          # trains examples/my_task.yaml
    python examples/my_task.py train.epochs=2 model.units=16

The task, `first_symbol`: read a sequence of random symbols and name the first one at the
end, a memory test that gets harder as `sequence_length` grows. Register a task before
seqtrain reads a config: the first config read in a process fixes the tasks a config may
name. The `seqtrain` command knows only the built-in tasks, so a run of this task is
trained and used from Python; `seqtrain ls` and `seqtrain plot` read its files like any
run's. See docs/your-own-task.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

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


class FirstSymbolParams(GeneratedTaskParams):
    """Parameters of `task: first_symbol` (besides `num_samples` and `split`)."""

    task: Literal["first_symbol"] = Field("first_symbol", description="Task name.")
    sequence_length: PositiveInt = Field(10, description="Steps per sequence.")
    alphabet: Annotated[int, Field(strict=True, ge=2)] = Field(
        4, description="Distinct symbols, the classes to choose from.")

    def sequence_shape(self) -> tuple[int, int]:
        return self.sequence_length, self.alphabet  # for the memory estimate


@register_task("first_symbol", FirstSymbolParams)
def first_symbol(params: FirstSymbolParams, seed: int) -> Dataset:
    """One-hot symbols (N, T, alphabet); the target is each sequence's first symbol."""
    import numpy as np  # builders import numpy when called: `validate` stays light

    rng = np.random.default_rng(seed)  # the same seed gives the same data
    symbols = rng.integers(0, params.alphabet, (params.num_samples, params.sequence_length))
    x = np.eye(params.alphabet, dtype=np.float32)[symbols]
    y = symbols[:, 0].astype(np.int32)
    train, val, test = split_arrays(x, y, None, params.split)
    spec = TaskSpec(timesteps=params.sequence_length, features=params.alphabet,
                    per_step=False, num_classes=params.alphabet)
    chance = np.full((len(test), params.alphabet), 1 / params.alphabet)
    return Dataset(spec=spec, train=train, val=val, test=test,
                   baseline=classification_baseline("chance", chance, test))


if __name__ == "__main__":
    import seqtrain

    run_dir = seqtrain.train(Path(__file__).with_name("my_task.yaml"), overrides=sys.argv[1:],
                             progress=True)
    print(run_dir)
