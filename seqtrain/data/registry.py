"""The task registry: task names mapped to a parameter model and a numpy dataset builder.

A task is a plain function `build(params, seed) -> Dataset`, registered with its own
pydantic parameter model so that `data:` is validated per task without TensorFlow.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from seqtrain.errors import SeqtrainError
from seqtrain.fields import Fraction, PositiveInt, Section

if TYPE_CHECKING:  # builders import numpy when they make data: `validate` needs none
    import numpy as np


class SplitFractions(Section):
    """Fractions of the samples that go to the train, validation and test splits."""

    train: Fraction = Field(0.8, description="Fraction of samples used for training.")
    val: Fraction = Field(0.1, description="Fraction used for validation (best checkpoint).")
    test: Fraction = Field(0.1, description="Fraction held out for the final test metrics.")

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train + val + test must sum to 1, got {self.train} + {self.val} + "
                f"{self.test} = {total:g}"
            )
        return self

    def sizes(self, num_samples: int) -> tuple[int, int, int]:
        """Number of samples in each split; the test split takes the rounding remainder."""
        num_train = round(num_samples * self.train)
        num_val = round(num_samples * self.val)
        return num_train, num_val, num_samples - num_train - num_val


class TaskParams(Section):
    """Parameters every task takes; a task's own model adds its `task` literal and the rest."""

    task: str
    split: SplitFractions = Field(
        default_factory=SplitFractions, description="Train/val/test fractions."
    )

    def vocabulary_size(self) -> int | None:
        """How many symbols the inputs are one-hot vectors of (0: real-valued; None: ask the file).

        A task with symbol inputs can feed a model an `Embedding` of them instead.
        """
        return 0

    def files(self) -> list[Path]:
        """The data files the task reads (recorded, with their SHA-256, in the run)."""
        return []

    def resolve_paths(self, base: Path) -> TaskParams:
        """The parameters with relative file paths made absolute against `base`."""
        return self


class FileTaskParams(TaskParams):
    """A task that reads a data file."""

    path: str = Field(description="The data file; a relative path starts at the config "
                      "file's folder.")

    def vocabulary_size(self) -> int | None:
        return None  # the file tells, when it is loaded

    def files(self) -> list[Path]:
        return [Path(self.path)]

    def resolve_paths(self, base: Path) -> FileTaskParams:
        path = Path(self.path).expanduser()
        return self if path.is_absolute() else self.model_copy(
            update={"path": str((base / path).resolve())})


class GeneratedTaskParams(TaskParams):
    """A task that generates its data from the seed: it takes a sample count."""

    num_samples: PositiveInt = Field(10000, description="Number of sequences generated.")

    @model_validator(mode="after")
    def _every_split_gets_samples(self):
        split = self.split
        sizes = split.sizes(self.num_samples)
        if min(sizes) < 1:
            raise ValueError(
                f"split: num_samples={self.num_samples} split {split.train}/{split.val}/"
                f"{split.test} gives {sizes[0]}/{sizes[1]}/{sizes[2]} train/val/test samples; "
                "every split needs at least 1: raise num_samples or the empty split's fraction"
            )
        return self


PAD = -1e9  # the value of every feature of a padded or masked step (see `TaskSpec.masked`)


@dataclass(frozen=True)
class TaskSpec:
    """What a task asks of the model: its input shape, its head, its loss and metric.

    Attributes:
        timesteps: Length of each input sequence.
        features: Number of features per step.
        per_step: Whether a target exists at every step (`return_sequences` on the last
            recurrent layer) or once per sequence.
        kind: `classification` (softmax head, cross-entropy, accuracy) or `regression`
            (linear head, mean squared error, mean absolute error).
        num_classes: Classification: the softmax width.
        output_dim: Regression: values predicted per step or per sequence.
        tokens: When nonzero, inputs are integer symbols 0..tokens-1, shaped (N, T),
            for an `Embedding` (see `with_token_inputs`).
        masked: Some steps are padding or missing: all their features are `PAD`, and a
            `Masking` layer makes the recurrent layers skip them.
        vocabulary: When nonzero, the inputs are one-hot vectors of this many symbols, which
            an `Embedding` can read as tokens instead.
    """

    timesteps: int
    features: int
    per_step: bool
    kind: str = "classification"
    num_classes: int = 0
    output_dim: int = 0
    tokens: int = 0
    masked: bool = False
    vocabulary: int = 0

    def __post_init__(self):
        if self.kind not in ("classification", "regression"):
            raise ValueError(f"kind must be classification or regression, got {self.kind!r}")

    @property
    def output_units(self) -> int:
        """Width of the model's last Dense layer."""
        return self.num_classes if self.kind == "classification" else self.output_dim

    @property
    def metric(self) -> str:
        """The task's main metric besides the loss: `accuracy` or `mae`."""
        return "accuracy" if self.kind == "classification" else "mae"


@dataclass(frozen=True)
class Baseline:
    """What a trivial predictor scores on the test split: the bar a model must clear.

    Attributes:
        description: The predictor, e.g. "always 1.0" or "the last value (persistence)".
        metrics: Its `loss` and main metric, computed like the model's.
    """

    description: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class Split:
    """One split's arrays; `sample_weight` is None when every target counts."""

    x: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray | None

    def __len__(self) -> int:
        return len(self.x)

    def num_batches(self, batch_size: int) -> int:
        """Batches per epoch; the last one may be smaller."""
        return -(-len(self) // batch_size)

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        """(x, y, sample_weight), or (x, y) when every target counts: what Keras takes."""
        return (self.x, self.y) if self.sample_weight is None else (
            self.x, self.y, self.sample_weight)

    def take(self, index) -> Split:
        """The samples at `index` (a slice or an index array), with their weights."""
        weights = None if self.sample_weight is None else self.sample_weight[index]
        return Split(self.x[index], self.y[index], weights)


@dataclass(frozen=True)
class Dataset:
    """A task's splits and the model shape they need."""

    spec: TaskSpec
    train: Split
    val: Split
    test: Split
    baseline: Baseline | None = None
    normalization: dict | None = None  # statistics a task computed on the training part


def split_arrays(
    x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, fractions: SplitFractions
) -> tuple[Split, Split, Split]:
    """Cut arrays into consecutive train/val/test parts (samples are i.i.d. already)."""
    num_train, num_val, _ = fractions.sizes(len(x))
    bounds = [(0, num_train), (num_train, num_train + num_val), (num_train + num_val, len(x))]
    whole = Split(x, y, sample_weight)
    return tuple(whole.take(slice(a, b)) for a, b in bounds)


def with_token_inputs(dataset: Dataset) -> Dataset:
    """The dataset with one-hot inputs (N, T, V) replaced by their symbols (N, T), int32.

    Raises:
        DataError: The inputs are not symbols.
    """
    from dataclasses import replace

    from seqtrain.errors import DataError

    vocabulary_size = dataset.spec.vocabulary
    if not vocabulary_size or dataset.spec.masked:
        raise DataError("model.embedding_dim needs symbol inputs (integer tokens, unpadded); "
                        "this data has real-valued or masked inputs: remove embedding_dim")

    def tokens(split: Split) -> Split:
        return replace(split, x=split.x.argmax(axis=-1).astype("int32"))

    spec = replace(dataset.spec, features=1, tokens=vocabulary_size)
    return replace(dataset, spec=spec, train=tokens(dataset.train), val=tokens(dataset.val),
                   test=tokens(dataset.test))


def regression_baseline(description: str, predicted: np.ndarray, split: Split) -> Baseline:
    """Mean squared and absolute error of `predicted` against the split's targets."""
    import numpy as np

    error = np.broadcast_to(predicted, split.y.shape) - split.y
    weights = np.ones_like(error)
    if split.sample_weight is not None:  # per-step weights (N, T) over targets (N, T, D)
        weights = weights * split.sample_weight[..., None]
    total = float(weights.sum())
    return Baseline(description, {"loss": float((weights * error**2).sum() / total),
                                  "mae": float((weights * abs(error)).sum() / total)})


def classification_baseline(description: str, probabilities: np.ndarray,
                            split: Split) -> Baseline:
    """Cross-entropy and accuracy of fixed class `probabilities` (…, C) on the targets."""
    import numpy as np

    picked = np.take_along_axis(probabilities, split.y[..., None], axis=-1)[..., 0]
    correct = probabilities.argmax(-1) == split.y
    weights = np.ones(split.y.shape) if split.sample_weight is None else split.sample_weight
    total = float(weights.sum())
    return Baseline(description, {
        "loss": float(-(weights * np.log(np.maximum(picked, 1e-7))).sum() / total),
        "accuracy": float((weights * correct).sum() / total)})


@dataclass(frozen=True)
class Task:
    name: str
    params: type[TaskParams]
    build: Callable[[TaskParams, int], Dataset]


_TASKS: dict[str, Task] = {}


def register_task(name: str, params: type[TaskParams]):
    """Register `build(params, seed) -> Dataset` under `name`, validated by `params`."""

    def decorator(build: Callable[[TaskParams, int], Dataset]):
        if name in _TASKS:
            raise ValueError(f"task {name!r} is registered twice")
        _TASKS[name] = Task(name, params, build)
        return build

    return decorator


def fingerprints(params: TaskParams) -> list[dict]:
    """Path, size and SHA-256 of each data file the task reads."""
    import hashlib

    found = []
    for path in params.files():
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        found.append({"path": str(path), "bytes": path.stat().st_size,
                      "sha256": digest.hexdigest()})
    return found


def task_names() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_TASKS)


def task_params_models() -> list[type[TaskParams]]:
    """Every registered task's parameter model, in name order."""
    return [_TASKS[name].params for name in task_names()]


def unknown_name_message(kind: str, name: object, choices: list[str]) -> str:
    """The message for an unknown name: what was given, what exists, the closest match."""
    message = f"Unknown {kind} {name!r}. Expected one of: {', '.join(choices)}."
    close = difflib.get_close_matches(str(name), choices, n=1)
    if close:
        message += f" Did you mean {close[0]!r}?"
    return message


def get_task(name: str) -> Task:
    """The registered task called `name`.

    Raises:
        SeqtrainError: No task has that name.
    """
    try:
        return _TASKS[name]
    except KeyError:
        raise SeqtrainError(unknown_name_message("task", name, task_names())) from None


def build_dataset(params: TaskParams, seed: int, token_inputs: bool = False,
                  normalization: dict | None = None) -> Dataset:
    """Generate the dataset described by `params`; the same seed gives the same arrays.

    Args:
        params: The `data:` section.
        seed: The experiment's seed.
        token_inputs: Give symbol inputs as integer tokens, for a model with an embedding.
        normalization: Statistics a run stored (`normalization.json`), to apply instead of
            computing them again from a training part that may have changed.
    """
    extra = {"normalization": normalization} if normalization else {}
    dataset = get_task(params.task).build(params, seed, **extra)
    if token_inputs:
        dataset = with_token_inputs(dataset)
    return dataset
