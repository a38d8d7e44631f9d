"""The task registry: task names mapped to a parameter model and a numpy dataset builder.

A task is a plain function `build(params, seed) -> Dataset`, registered with its own
pydantic parameter model so that `data:` is validated per task without TensorFlow.
"""

from __future__ import annotations

import difflib
import inspect
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from seqtrain.data.preprocessing import complete, is_legacy
from seqtrain.errors import DataError, SeqtrainError
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

    def default_embedding_dim(self) -> int | None:
        """`model.embedding_dim` when the config leaves it out; None: no embedding.

        A task whose inputs are words (text) needs an embedding and gives its size here.
        """
        return None

    def per_step(self) -> bool | None:
        """Whether the task predicts at every step (True) or once per sequence (False).

        None: the data file tells, when it is loaded. Checked before training for settings
        that fit only one kind of head (`model.attention`).
        """
        return None

    def task_kind(self) -> str | None:
        """`classification` or `regression`; None: known once the data is built.

        None for a data file whose kind is `auto`, or a task of your own that does not say.
        Checked before training against what `train.monitor` names.
        """
        return None

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

    def sequence_shape(self) -> tuple[int, int] | None:
        """(steps, features) of each generated sequence, for memory estimates; None: unknown."""
        return None

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
        output_offset: Regression: with `output_scale`, the model's output is
            `output_offset + output_scale * z` (a fixed `Rescaling` after the head), so the
            network learns a standardised target `z` while its outputs, loss and metrics
            stay in the target's units. Empty: no rescaling.
        output_scale: Regression: see `output_offset`, one value per output.
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
    output_offset: tuple[float, ...] = ()
    output_scale: tuple[float, ...] = ()

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
    """One split's arrays, as the model reads them.

    Attributes:
        x: The model's inputs.
        y: The targets as the model is trained on them (None: inputs without targets).
        sample_weight: Per-sequence or per-step weights; None when every target counts.
        keys: What names each sequence in the user's data (a date, a row, an id); None:
            its position.
        level: `normalization: window`: each sequence's last observed target value, which
            the model's outputs (and `y`) are relative to; None otherwise.
    """

    x: np.ndarray
    y: np.ndarray | None
    sample_weight: np.ndarray | None
    keys: np.ndarray | None = None
    level: np.ndarray | None = None

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
        """The samples at `index` (a slice or an index array), with their weights and keys."""
        def pick(array):
            return None if array is None else array[index]

        return Split(self.x[index], pick(self.y), pick(self.sample_weight), pick(self.keys),
                     pick(self.level))


@dataclass(frozen=True)
class Dataset:
    """A task's splits and the model shape they need."""

    spec: TaskSpec
    train: Split
    val: Split
    test: Split
    baseline: Baseline | None = None
    # How raw inputs become model inputs and outputs become predictions, with what the task
    # learned from its training split (`preprocessing.json`; see `preprocessing.py`).
    preprocessing: dict = field(default_factory=dict)


def split_arrays(
    x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, fractions: SplitFractions
) -> tuple[Split, Split, Split]:
    """Cut arrays into consecutive train/val/test parts (samples are i.i.d. already)."""
    return cut(Split(x, y, sample_weight), fractions)


def cut(whole: Split, fractions: SplitFractions) -> tuple[Split, Split, Split]:
    """`whole` in consecutive train/val/test parts."""
    num_train, num_val, _ = fractions.sizes(len(whole))
    bounds = [(0, num_train), (num_train, num_train + num_val),
              (num_train + num_val, len(whole))]
    return tuple(whole.take(slice(a, b)) for a, b in bounds)


def with_token_inputs(dataset: Dataset) -> Dataset:
    """The dataset with one-hot inputs (N, T, V) replaced by their symbols (N, T), int32.

    Raises:
        DataError: The inputs are not symbols.
    """
    vocabulary_size = dataset.spec.vocabulary
    if not vocabulary_size or dataset.spec.masked:
        raise DataError("model.embedding_dim needs symbol inputs (integer tokens, unpadded); "
                        "this data has real-valued or masked inputs: remove embedding_dim")

    spec = replace(dataset.spec, features=1, tokens=vocabulary_size)
    return replace(dataset, spec=spec, train=as_tokens(dataset.train),
                   val=as_tokens(dataset.val), test=as_tokens(dataset.test))


def as_tokens(split: Split) -> Split:
    """`split` with one-hot inputs (N, T, V) replaced by their symbols (N, T), int32."""
    return replace(split, x=split.x.argmax(axis=-1).astype("int32"))


def regression_baseline(description: str, predicted: np.ndarray, split: Split,
                        scale: tuple[float, ...] = ()) -> Baseline:
    """Squared and absolute error of `predicted` against the split's targets.

    Both `predicted` and the targets are in the target's units (for `window` normalization,
    both relative to the same level). `loss` is the mean squared error as the model's loss
    counts it: divided by the mean of `scale` squared, when the model learns a rescaled
    target (see `TaskSpec.output_scale`).
    """
    import numpy as np

    error = np.broadcast_to(predicted, split.y.shape) - split.y
    weights = np.ones_like(error)
    if split.sample_weight is not None:  # per-step weights (N, T) over targets (N, T, D)
        weights = weights * split.sample_weight[..., None]
    total = float(weights.sum())
    mse = float((weights * error**2).sum() / total)
    return Baseline(description, {"loss": mse / loss_divisor(scale), "mse": mse,
                                  "mae": float((weights * abs(error)).sum() / total)})


def loss_divisor(scale: tuple[float, ...]) -> float:
    """What the mean squared error in the target's units is divided by in the loss.

    The target's scale is one number for all its columns (`target_statistics`), so this
    makes the loss exactly the mean squared error of the standardised target.
    """
    return float(sum(s * s for s in scale) / len(scale)) if scale else 1.0


def classification_baseline(description: str, probabilities: np.ndarray,
                            split: Split) -> Baseline:
    """Cross-entropy and accuracy of class `probabilities` (…, C) on the split's targets.

    Probabilities are clipped to [1e-7, 1 - 1e-7] as Keras's cross-entropy clips them.
    """
    import numpy as np

    picked = np.take_along_axis(probabilities, split.y[..., None].astype(np.int64), -1)[..., 0]
    correct = probabilities.argmax(-1) == split.y
    weights = np.ones(split.y.shape) if split.sample_weight is None else split.sample_weight
    total = float(weights.sum())
    return Baseline(description, {
        "loss": float(-(weights * np.log(np.clip(picked, 1e-7, 1 - 1e-7))).sum() / total),
        "accuracy": float((weights * correct).sum() / total)})


@dataclass(frozen=True)
class Task:
    """A registered task: its parameters, its dataset builder and its reader of new inputs.

    Attributes:
        name: The `task:` name.
        params: Its parameter model.
        build: `build(params, seed[, preprocessing]) -> Dataset`; given a run's stored
            `preprocessing`, it applies those statistics instead of fitting new ones.
        read: `read(params, path, preprocessing, targets) -> Split`: a file of new inputs,
            in the form the task reads, as model inputs (`seqtrain predict`); with
            `targets`, their targets too (`seqtrain eval` on a file), or a DataError saying
            what the file lacks. None: the task cannot read new inputs.
        tensorflow: The builder (and the reading of new inputs, after the file is checked)
            uses TensorFlow: its callers start it first, on the run's device.
        encode: `encode(split, preprocessing, path) -> Split`: what `read` gave, as model
            inputs, with TensorFlow (text: tokenised), once the file is checked and
            TensorFlow started. None: `read` gives model inputs itself.
    """

    name: str
    params: type[TaskParams]
    build: Callable[..., Dataset]
    read: Callable[..., Split] | None = None
    tensorflow: bool = False
    encode: Callable[..., Split] | None = None


_TASKS: dict[str, Task] = {}


def register_task(name: str, params: type[TaskParams], tensorflow: bool = False):
    """Register `build(params, seed) -> Dataset` under `name`, validated by `params`.

    `tensorflow`: the builder imports TensorFlow (see `Task.tensorflow`).
    """

    def decorator(build: Callable[[TaskParams, int], Dataset]):
        if name in _TASKS:
            raise ValueError(f"task {name!r} is registered twice")
        _TASKS[name] = Task(name, params, build, tensorflow=tensorflow)
        return build

    return decorator


def register_reader(name: str, encode: Callable[..., Split] | None = None):
    """Register `read(params, path, preprocessing, targets) -> Split` for task `name`.

    The reader turns a file of new inputs into model inputs with the same code and the
    stored statistics the task's builder used in training: nothing is fitted again.
    `encode`: the step that needs TensorFlow, after the reader checked the file (see
    `Task.encode`).
    """

    def decorator(read: Callable[..., Split]):
        _TASKS[name] = replace(get_task(name), read=read, encode=encode)
        return read

    return decorator


def fingerprints(params: TaskParams) -> list[dict]:
    """Path, size and SHA-256 of each data file the task reads."""
    return [{"path": str(path), "bytes": path.stat().st_size, "sha256": file_digest(path)}
            for path in params.files()]


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's content, in hex."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
                  preprocessing: dict | None = None) -> Dataset:
    """Generate the dataset described by `params`; the same seed gives the same arrays.

    Args:
        params: The `data:` section.
        seed: The experiment's seed.
        token_inputs: Give symbol inputs as integer tokens, for a model with an embedding.
        preprocessing: What a run stored (`preprocessing.json`), to apply its statistics
            instead of computing them again from a training part that may have changed.

    Returns:
        The dataset; its `preprocessing` complete (see `seqtrain.data.preprocessing`).
    """
    build = get_task(params.task).build
    extra = {}
    if preprocessing and "preprocessing" in inspect.signature(build).parameters:
        extra["preprocessing"] = preprocessing
    dataset = build(params, seed, **extra)
    # A task that gives tokens itself (text) has them embedded as they are.
    token_inputs = token_inputs and not dataset.spec.tokens
    if token_inputs:
        dataset = with_token_inputs(dataset)
    document = complete(params, dataset, token_inputs)
    if is_legacy(preprocessing):  # a run from before preprocessing.json: compiled as it was
        document["format"] = 0
    return replace(dataset, preprocessing=document)


def read_inputs(params: TaskParams, path: Path, preprocessing: dict,
                targets: bool = False, start: Callable[[], object] | None = None) -> Split:
    """A file of new inputs as the trained model reads them (see `Task.read`).

    Args:
        params: The run's `data:` section.
        path: The file.
        preprocessing: The run's stored `preprocessing.json`.
        targets: Also read the targets (to score the file), or fail naming what is missing.
        start: Starts TensorFlow on the run's device, for a task that tokenises texts; it
            is called only once the whole file has been read and checked.

    Raises:
        DataError: The file does not fit the run, or the task reads no files.
    """
    task = get_task(params.task)
    if task.read is None:
        raise DataError(f"task {task.name!r} cannot read new inputs from a file")
    split = task.read(params, Path(path), preprocessing, targets)
    if targets and split.y is None:
        raise DataError(f"{path} holds no targets to score the model against")
    if preprocessing["input"].get("encoding") == "tokens":
        split = as_tokens(split)
    elif task.encode is not None:
        if start is not None:
            start()
        split = task.encode(split, preprocessing, Path(path))
    return split


def check_files(params: TaskParams) -> None:
    """Every data file the task reads exists: said at once, before TensorFlow starts.

    Raises:
        DataError: A file is missing (its contents are checked when it is read).
    """
    for path in params.files():
        if Path(path).is_dir():
            raise DataError(f"data.path: {path} is a folder; expected a data file")
        if not Path(path).is_file():
            raise DataError(f"data.path: {path} does not exist (relative paths start at the "
                            "config file's folder)")


# --- reading new inputs --------------------------------------------------------------------

def load_npz(path: Path, what: str = "data.path") -> dict[str, np.ndarray]:
    """Every array of a `.npz` file, loaded without pickles.

    Raises:
        DataError: Missing, not an `.npz`, or holding Python objects.
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        where = " (relative paths start at the config file's folder)" if what else ""
        raise DataError(f"{what + ': ' if what else ''}{path} does not exist{where}")
    with open(path, "rb") as file:
        if file.read(4) != b"PK\x03\x04":  # else np.load would take it for a pickle
            raise DataError(f"{path} is not a readable .npz file (no zip header); write it "
                            "with np.savez or np.savez_compressed")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as err:
        raise DataError(f"{path}: {err}; save plain numeric arrays (np.savez), not "
                        "Python objects") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path} is not a readable .npz file ({err})") from None


def npz_array(arrays: dict, name: str, path: Path | str) -> np.ndarray:
    """The array called `name`, or a DataError that lists the arrays there are."""
    if name not in arrays:
        raise DataError(f"{path} has no array {name!r}; it has: {', '.join(sorted(arrays))}")
    return arrays[name]


def integer_array(arrays: dict, name: str, path: Path, ndim: int, high: int,
                  what: str) -> np.ndarray:
    """An (N, T) array of whole numbers in [0, high), or a DataError naming it.

    `what` says what the numbers are (digits, tokens, bits), for the message.
    """
    import numpy as np

    array = npz_array(arrays, name, path)
    if array.ndim != ndim or not np.issubdtype(array.dtype, np.integer) or not array.size:
        raise DataError(f"{path}: array {name!r} has shape {array.shape} and dtype "
                        f"{array.dtype}; expected {what} as integers shaped (N, T)")
    low, top = int(array.min()), int(array.max())
    if low < 0 or top >= high:
        bad = low if low < 0 else top
        where = tuple(int(i) for i in np.argwhere(array == bad)[0])
        raise DataError(f"{path}: array {name!r} holds {bad} at {where}; this run's {what} "
                        f"are 0 to {high - 1}")
    return array
