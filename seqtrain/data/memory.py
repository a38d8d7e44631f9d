"""Long-memory benchmarks: the adding problem, the copy-memory task and marked recall.

All test what recurrent cells can remember across many steps: a SimpleRNN's gradient
vanishes over long sequences while an LSTM or GRU can carry the information. Marked recall
asks for one symbol far from the end, which attention pooling (`model.attention`) reads
straight from that step's output instead of carrying it through the last state.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from seqtrain.data.registry import (
    Dataset,
    GeneratedTaskParams,
    Split,
    TaskSpec,
    classification_baseline,
    integer_array,
    load_npz,
    npz_array,
    register_reader,
    register_task,
    regression_baseline,
    split_arrays,
)
from seqtrain.errors import DataError
from seqtrain.fields import PositiveInt

if TYPE_CHECKING:
    import numpy as np


class AddingParams(GeneratedTaskParams):
    """Parameters of `task: adding` (Hochreiter & Schmidhuber 1997)."""

    task: Literal["adding"] = Field("adding", description="Task name.")
    sequence_length: Annotated[int, Field(strict=True, ge=2)] = Field(
        100, description="Steps per sequence (at least 2); one marker falls in each half."
    )

    def task_kind(self) -> str:
        return "regression"

    def per_step(self) -> bool:
        return False

    def sequence_shape(self) -> tuple[int, int]:
        return self.sequence_length, 2


@register_task("adding", AddingParams)
def adding(params: AddingParams, seed: int) -> Dataset:
    """Sum the two marked values of a sequence (regression, one target per sequence).

    Two channels: values uniform in [0, 1], and a 0/1 marker on exactly two steps, one in
    each half of the sequence. Always answering 1.0 scores a mean squared error of 1/6.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n, length = params.num_samples, params.sequence_length
    values = rng.random((n, length), dtype=np.float32)
    half = length // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    markers = np.zeros((n, length), dtype=np.float32)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values[rows, first] + values[rows, second])[:, None].astype(np.float32)
    train, val, test = split_arrays(x, y, None, params.split)
    spec = TaskSpec(timesteps=length, features=2, per_step=False, kind="regression",
                    output_dim=1)
    baseline = regression_baseline("always 1.0", np.float32(1.0), test)
    inputs = {"source": "npz", "x": "x",
              "reading": ["array 'x' of an .npz file: (N, T, 2) floats, the values and a 0/1 "
                          "marker on the two steps to add"]}
    return Dataset(spec=spec, train=train, val=val, test=test, baseline=baseline,
                   preprocessing={"input": inputs, "output": {"names": ["sum"]}})


@register_reader("adding")
def read_adding(params: AddingParams, path: Path, preprocessing: dict,
                targets: bool = False) -> Split:
    """`x`: (N, T, 2) values and markers; the target is the sum of the marked values."""
    import numpy as np

    x = npz_array(load_npz(path, what=""), "x", path)
    if x.ndim != 3 or x.shape[2] != 2 or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: array 'x' has shape {x.shape} and dtype {x.dtype}; expected "
                        "(N, T, 2) numbers: the values and the 0/1 markers")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        row, step, _ = map(int, np.argwhere(~np.isfinite(x))[0])
        raise DataError(f"{path}: array 'x' has NaN or inf (first in sequence {row}, step "
                        f"{step}); this task reads finite numbers")
    y = (x[..., 0] * x[..., 1]).sum(axis=1, keepdims=True).astype(np.float32)
    return Split(x, y, None)


class CopyMemoryParams(GeneratedTaskParams):
    """Parameters of `task: copy_memory` (Arjovsky, Shah & Bengio 2016)."""

    task: Literal["copy_memory"] = Field("copy_memory", description="Task name.")
    num_symbols: PositiveInt = Field(10, description="Symbols to memorise and reproduce.")
    alphabet: PositiveInt = Field(8, description="Distinct symbols (classes 1..alphabet).")
    delay: PositiveInt = Field(
        50, description="Steps between the end of the symbols and the delimiter."
    )

    def task_kind(self) -> str:
        return "classification"

    def per_step(self) -> bool:
        return True

    def vocabulary_size(self) -> int:
        return self.alphabet + 2  # blank, the symbols, the delimiter

    def sequence_shape(self) -> tuple[int, int]:
        return self.delay + 2 * self.num_symbols, self.vocabulary_size()


@register_task("copy_memory", CopyMemoryParams)
def copy_memory(params: CopyMemoryParams, seed: int) -> Dataset:
    """Reproduce the first `num_symbols` symbols after a long gap (per-step classification).

    Input: the symbols, `delay - 1` blanks, a delimiter, `num_symbols` blanks. Target:
    blank everywhere but the last `num_symbols` steps, which repeat the symbols. The
    memoryless baseline outputs blanks, then a uniform guess after the delimiter.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n, count, alphabet = params.num_samples, params.num_symbols, params.alphabet
    length = params.delay + 2 * count
    blank, delimiter = 0, alphabet + 1
    symbols = rng.integers(1, alphabet + 1, (n, count), dtype=np.int32)
    tokens = np.full((n, length), blank, dtype=np.int32)
    tokens[:, :count] = symbols
    tokens[:, count + params.delay - 1] = delimiter
    targets = np.full((n, length), blank, dtype=np.int32)
    targets[:, -count:] = symbols
    classes = alphabet + 2
    x = np.eye(classes, dtype=np.float32)[tokens]
    train, val, test = split_arrays(x, targets, None, params.split)
    inputs = {"source": "npz", "x": "x", "encoding": "onehot", "vocabulary": classes,
              "reading": [f"array 'x' of an .npz file: (N, T) tokens, 0 blank, 1..{alphabet} "
                          f"symbols, {delimiter} the delimiter"]}
    spec = TaskSpec(timesteps=length, features=classes, per_step=True, num_classes=classes,
                    vocabulary=classes)
    guess = np.zeros(test.y.shape + (classes,))
    guess[:, :-count, blank] = 1.0
    guess[:, -count:, 1:alphabet + 1] = 1.0 / alphabet
    baseline = classification_baseline("memoryless: blanks, then a uniform guess", guess, test)
    return Dataset(spec=spec, train=train, val=val, test=test, baseline=baseline,
                   preprocessing={"input": inputs})


@register_reader("copy_memory")
def read_copy_memory(params: CopyMemoryParams, path: Path, preprocessing: dict,
                     targets: bool = False) -> Split:
    """`x`: (N, T) tokens; the targets are blanks, then the first `num_symbols` tokens."""
    import numpy as np

    classes = params.vocabulary_size()
    tokens = integer_array(load_npz(path, what=""), "x", path, 2, classes, "tokens")
    count = params.num_symbols
    if tokens.shape[1] < 2 * count:
        raise DataError(f"{path}: array 'x' has {tokens.shape[1]} steps; this run's sequences "
                        f"hold {count} symbols and repeat them at the end: at least {2 * count}")
    y = np.zeros(tokens.shape, dtype=np.int32)
    y[:, -count:] = tokens[:, :count]
    return Split(np.eye(classes, dtype=np.float32)[tokens], y, None)


class MarkedRecallParams(GeneratedTaskParams):
    """Parameters of `task: marked_recall`."""

    task: Literal["marked_recall"] = Field("marked_recall", description="Task name.")
    sequence_length: Annotated[int, Field(strict=True, ge=2)] = Field(
        200, description="Steps per sequence (at least 2); the marked step falls in the first "
        "half."
    )
    alphabet: Annotated[int, Field(strict=True, ge=2)] = Field(
        8, description="Distinct symbols (classes 0..alphabet-1), one at every step."
    )

    def task_kind(self) -> str:
        return "classification"

    def per_step(self) -> bool:
        return False

    def sequence_shape(self) -> tuple[int, int]:
        return self.sequence_length, self.alphabet + 1


@register_task("marked_recall", MarkedRecallParams)
def marked_recall(params: MarkedRecallParams, seed: int) -> Dataset:
    """Name the symbol at the one marked step (classification, one target per sequence).

    Every step holds a random symbol (one-hot, `alphabet` channels) and a marker channel
    that is 1 at exactly one step, in the first half of the sequence: at least T/2 steps
    of distractors follow it. Guessing scores 1/alphabet accuracy.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n, length, alphabet = params.num_samples, params.sequence_length, params.alphabet
    symbols = rng.integers(0, alphabet, (n, length), dtype=np.int32)
    marked = rng.integers(0, length // 2, n)
    x, y = _marked_inputs(symbols, marked, alphabet)
    train, val, test = split_arrays(x, y, None, params.split)
    spec = TaskSpec(timesteps=length, features=alphabet + 1, per_step=False,
                    num_classes=alphabet)
    baseline = classification_baseline("a uniform guess",
                                       np.full(test.y.shape + (alphabet,), 1.0 / alphabet), test)
    inputs = {"source": "npz", "x": "x", "marked": "marked",
              "reading": [f"array 'x' of an .npz file: (N, T) symbols 0..{alphabet - 1}, fed "
                          f"one-hot ({alphabet} features)",
                          "array 'marked' (N,): the marked step of each sequence, fed as one "
                          "more feature, 1 there and 0 elsewhere"]}
    return Dataset(spec=spec, train=train, val=val, test=test, baseline=baseline,
                   preprocessing={"input": inputs})


def _marked_inputs(symbols: np.ndarray, marked: np.ndarray, alphabet: int):
    """(N, T, alphabet + 1) one-hot symbols and marker channel; the marked symbols (N,)."""
    import numpy as np

    n, length = symbols.shape
    x = np.zeros((n, length, alphabet + 1), dtype=np.float32)
    x[..., :alphabet] = np.eye(alphabet, dtype=np.float32)[symbols]
    rows = np.arange(n)
    x[rows, marked, alphabet] = 1.0
    return x, symbols[rows, marked].astype(np.int32)


@register_reader("marked_recall")
def read_marked_recall(params: MarkedRecallParams, path: Path, preprocessing: dict,
                       targets: bool = False) -> Split:
    """`x`: (N, T) symbols; `marked`: (N,) marked steps. The target is the marked symbol."""
    import numpy as np

    arrays = load_npz(path, what="")
    symbols = integer_array(arrays, "x", path, 2, params.alphabet, "symbols")
    marked = npz_array(arrays, "marked", path)
    n, length = symbols.shape
    if marked.shape != (n,) or not np.issubdtype(marked.dtype, np.integer):
        raise DataError(f"{path}: array 'marked' has shape {marked.shape} and dtype "
                        f"{marked.dtype}; expected ({n},) integers, the marked step of each "
                        "sequence of 'x'")
    outside = (marked < 0) | (marked >= length)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise DataError(f"{path}: array 'marked' holds {int(marked[row])} at sequence {row}; "
                        f"the sequences of 'x' have steps 0 to {length - 1}")
    x, y = _marked_inputs(symbols, marked, params.alphabet)
    return Split(x, y, None)
