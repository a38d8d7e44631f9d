"""A finished run, opened for use: its config, summary, preprocessing and model.

`seqtrain predict`, `seqtrain export` and the Python API (`seqtrain.load`) all go through
`TrainedRun`, so there is one way from raw inputs to model inputs (the task's own reader,
with the statistics the run stored) and from outputs to predictions (`Predictions`).
TensorFlow starts only when the model is first needed: bad inputs are refused before.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqtrain import runtime
from seqtrain.checkpoints import check_checkpoint_name, checkpoint_file, load_checkpoint
from seqtrain.config import ExperimentConfig
from seqtrain.data import Split, build_dataset
from seqtrain.data.registry import read_inputs
from seqtrain.errors import DataError, SeqtrainError
from seqtrain.predictions import Predictions
from seqtrain.rundir import RunDir, changed_files, open_run_dir, read_json, read_run_config

if TYPE_CHECKING:
    import keras
    import numpy as np

SPLITS = ("train", "val", "test")
# Sequences per call of the model: inference keeps no activations for a backward pass, so
# batches far larger than training's cost little memory and use the cores better.
PREDICT_BATCH_SIZE = 1024


# What ends a line of a `.txt` for its reader: only these, as the tokeniser splits words.
LINE_BREAK = re.compile(r"\r\n|[\r\n]")


class TrainedRun:
    """A run directory's trained model, ready to predict on new inputs or its own splits.

    Args:
        path: The run directory.
        checkpoint: `best` (the monitored value's best epoch) or `last`.
        device: Where the model runs: auto, cpu, gpu or gpu:N.

    Raises:
        RunDirError: Not a run directory, or the checkpoint is missing.
    """

    def __init__(self, path: str | os.PathLike, checkpoint: str = "best", device: str = "auto",
                 start: Callable[[], object] | None = None):
        check_checkpoint_name(checkpoint)
        self._start = start  # how TensorFlow starts, if not on `device` with the run's threads
        self.run: RunDir = open_run_dir(Path(path))
        self.config: ExperimentConfig = read_run_config(self.run)
        self.checkpoint = checkpoint
        self.device = device
        self.checkpoint_path = checkpoint_file(self.run, checkpoint)

    def __repr__(self) -> str:
        return f"TrainedRun({str(self.path)!r}, checkpoint={self.checkpoint!r})"

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def summary(self) -> dict[str, Any]:
        """The run's `summary.json` (status, metrics, baseline, ...)."""
        return read_json(self.run.summary)

    @cached_property
    def preprocessing(self) -> dict[str, Any]:
        """How raw inputs become model inputs and outputs predictions (`preprocessing.json`).

        A run made before that file existed gets it rebuilt from its data and the
        statistics it stored then.
        """
        if self.run.preprocessing.exists():
            return read_json(self.run.preprocessing)
        return self.dataset().preprocessing

    @cached_property
    def model(self) -> keras.Model:
        """The checkpoint's plain Keras model (TensorFlow starts here)."""
        self.start_tensorflow()
        return load_checkpoint(self.checkpoint_path)

    @cached_property
    def _started(self) -> object:
        if self._start is not None:
            return self._start()
        return runtime.select_device(self.device, self.config.runtime.intra_op_threads,
                                     self.config.runtime.inter_op_threads)

    def start_tensorflow(self) -> None:
        """Start TensorFlow on the run's device and threads, once.

        The model needs it, and a task that tokenises texts needs it before.
        """
        self._started  # noqa: B018

    def dataset(self):
        """The run's data, rebuilt from its config and stored statistics (`build_dataset`)."""
        from seqtrain.data.registry import get_task
        from seqtrain.rundir import stored_preprocessing

        config = self.config
        if get_task(config.data.task).tensorflow:
            self.start_tensorflow()
        return build_dataset(config.data, config.seed, bool(config.model.embedding_dim),
                             stored_preprocessing(self.run, config.data.task))

    def warnings(self) -> list[str]:
        """Data files that changed since the run trained on them."""
        return changed_files(self.run, self.config)

    def prepare(self, inputs: Any = None, split: str | None = None,
                targets: bool = False) -> Split:
        """Model inputs from `inputs` (or the run's own `split`), as the run's task reads them.

        Args:
            inputs: A file in the task's form (`.npz`, `.csv`, `.txt` for text); or, as that
                file would hold them, a NumPy array (the `x` array), a dict of arrays (an
                `.npz`'s arrays, or a CSV's columns), a list of rows (dicts, a CSV's rows),
                or for a text run a list of texts.
            split: `train`, `val` or `test`: the run's own split, with its targets.
            targets: Also read the targets of `inputs` (to score them).

        Raises:
            DataError: Inputs that do not fit the run (the message names the file, array,
                column or row), or both or neither of `inputs` and `split`.
        """
        if inputs is not None and split is not None:
            raise SeqtrainError("give INPUT (a file of new inputs) or a split, not both")
        if inputs is None and split is None:
            raise SeqtrainError("give INPUT (a file of new inputs) or a split (train, val or "
                                "test) to predict")
        if split is not None:
            if split not in SPLITS:
                raise SeqtrainError(f"split (--split) got {split!r}; expected train, val or "
                                    "test")
            part = getattr(self.dataset(), split)
        elif isinstance(inputs, (str, os.PathLike)):
            path = Path(inputs)
            if not path.is_file():
                raise DataError(f"input {path} is a folder, not a file" if path.is_dir()
                                else f"input {path} does not exist")
            part = read_inputs(self.config.data, path, self.preprocessing, targets,
                               self.start_tensorflow)
        else:
            with tempfile.TemporaryDirectory(prefix=".seqtrain-inputs.") as folder:
                path = self._as_file(inputs, Path(folder))
                try:
                    part = read_inputs(self.config.data, path, self.preprocessing, targets,
                                       self.start_tensorflow)
                except DataError as err:  # the temporary file means nothing to the caller
                    raise DataError(str(err).replace(str(path), "the inputs given")) from None
        self._check_length(part)
        return part

    def predict(self, inputs: Any = None, *, split: str | None = None,
                batch_size: int | None = None, attention: bool = False) -> Predictions:
        """Predictions for `inputs` (or the run's `split`, with true values); see `prepare`.

        With `attention`, each sequence's attention weights per step too (a run trained
        with `model.attention`).

        Returns:
            `Predictions`: `.arrays()`, `.rows()`, `.metrics()` (with a split), `.write(path)`.
        """
        if attention:
            self.check_attention()
        part = self.prepare(inputs, split)
        outputs = self.predict_arrays(part.x, batch_size)
        weights = self.attention_arrays(part.x, batch_size) if attention else None
        return Predictions(self.preprocessing, outputs, part, with_true=split is not None,
                           attention=weights)

    def predict_arrays(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """The model's raw outputs for prepared inputs `x` (see `prepare`)."""
        batch_size = PREDICT_BATCH_SIZE if batch_size is None else batch_size
        if batch_size < 1:
            raise SeqtrainError(f"batch size (--batch-size) got {batch_size}; expected 1 or "
                                "more")
        return self.model.predict(x, batch_size=batch_size, verbose=0)

    def check_attention(self, what: str = "--attention") -> None:
        """Refuse attention weights of a run without attention, before TensorFlow starts.

        `what` names what asked for them, for the message.

        Raises:
            SeqtrainError: The run's model has no attention layer.
        """
        if self.config.model.attention == "none":
            raise SeqtrainError(f"{what}: run {self.path} has no attention layer "
                                "(model.attention: none); train with model.attention: additive "
                                "or dot to see attention weights")

    def attention_arrays(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """(N, T) attention weights of prepared inputs `x`: 0 on padding, each row sums to 1.

        Raises:
            SeqtrainError: The run's model has no attention layer.
        """
        self.check_attention()
        batch_size = PREDICT_BATCH_SIZE if batch_size is None else batch_size
        return self._attention_model.predict(x, batch_size=batch_size, verbose=0)

    @cached_property
    def _attention_model(self) -> keras.Model:
        """The checkpoint's layers up to its attention pooling, returning the weights."""
        import keras

        from seqtrain.layers import AttentionPooling

        model = self.model
        index = next(i for i, layer in enumerate(model.layers)
                     if isinstance(layer, AttentionPooling))
        source = model.inputs[0]
        inputs = keras.Input(shape=source.shape[1:], dtype=source.dtype, name=source.name)
        sequence = inputs
        for layer in model.layers[:index]:  # masks travel with the tensors, as in the model
            sequence = layer(sequence)
        # A copy of the pooling layer: a Functional model takes a layer's output structure
        # from its first call, which returned the pooled vector alone.
        pooling = model.layers[index]
        probe = AttentionPooling.from_config(pooling.get_config())
        _, weights = probe(sequence, return_attention_scores=True)
        probe.set_weights(pooling.get_weights())
        return keras.Model(inputs, weights, name="attention_weights")

    def _check_length(self, part: Split) -> None:
        """An unrolled model reads exactly its training length."""
        steps = self.preprocessing["model_input"]["timesteps_in_training"]
        if self.config.model.unroll and part.x.shape[1] != steps:
            raise DataError(f"the inputs have {part.x.shape[1]} steps; this run's model is "
                            f"unrolled (model.unroll: true) and reads exactly {steps}")

    def _as_file(self, inputs: Any, folder: Path) -> Path:
        """In-memory inputs written as the file the task's reader takes."""
        import numpy as np

        source = self.preprocessing["input"].get("source")
        if source == "text":
            if isinstance(inputs, (list, tuple)) and inputs and all(
                    isinstance(text, str) for text in inputs):
                blank = [n for n, text in enumerate(inputs, start=1) if not text.strip()]
                if blank and self.preprocessing["input"].get("missing", "error") == "error":
                    raise DataError(f"the inputs given, text {blank[0]}: the text is empty, "
                                    "and this run was trained with data.missing: error; "
                                    "give texts with words")
                # One line per text, keyed 1, 2, ...: its place in the list. A line break
                # inside a text is whitespace to the tokeniser, as a space is.
                path = folder / "inputs.txt"
                lines = "".join(LINE_BREAK.sub(" ", text) + "\n" for text in inputs)
                try:
                    path.write_text(lines, encoding="utf-8")
                except UnicodeEncodeError as err:
                    raise DataError(f"the inputs given hold {err.object[err.start]!r}, which "
                                    "is no text (a lone surrogate); give valid strings") from None
                return path
            source = "csv"  # rows or columns, written as a CSV
        if isinstance(inputs, np.ndarray):
            if source == "csv":
                raise DataError("this run reads a CSV table: give its rows (a list of dicts) "
                                "or its columns (a dict of lists), not an array")
            inputs = {getattr(self.config.data, "x", "x"): inputs}
        if source == "csv" and isinstance(inputs, dict):  # columns
            lengths = {len(v) for v in inputs.values()}
            if len(lengths) != 1:
                raise DataError(f"the input columns have different lengths: {sorted(lengths)}")
            names = list(inputs)
            inputs = [dict(zip(names, values, strict=True))
                      for values in zip(*inputs.values(), strict=True)]
        if source == "csv" and isinstance(inputs, list):
            if not inputs or not all(isinstance(row, dict) for row in inputs):
                raise DataError("the input rows must be a non-empty list of dicts, one per row")
            path = folder / "inputs.csv"
            names = list(dict.fromkeys(key for row in inputs for key in row))
            with open(path, "w", newline="", encoding="utf-8") as file:
                writer = csv.DictWriter(file, fieldnames=names)
                writer.writeheader()
                writer.writerows(inputs)
            return path
        if source != "csv" and isinstance(inputs, dict):
            path = folder / "inputs.npz"
            try:
                np.savez(path, **{name: np.asarray(value) for name, value in inputs.items()})
            except (TypeError, ValueError) as err:
                raise DataError(f"the input arrays cannot be stored as an .npz: {err}") from None
            return path
        wanted = ("a CSV path, a list of rows (dicts) or a dict of columns" if source == "csv"
                  else "an .npz path, a NumPy array or a dict of arrays")
        raise DataError(f"inputs of type {type(inputs).__name__} are not readable here; this "
                        f"run reads {wanted}")
