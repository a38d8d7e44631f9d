"""TensorBoard event files of a run, written with TensorFlow's own summary API.

    RUN_DIR/tensorboard/train/        epoch_loss, epoch_<metric>, epoch_learning_rate,
                                      epoch_seconds, and the config as text
    RUN_DIR/tensorboard/validation/   epoch_loss, epoch_<metric>: the val_ values

The layout and tags are those of `keras.callbacks.TensorBoard`, so `tensorboard --logdir`
on a run, a runs folder or a sweep folder shows train and validation curves side by side.
The step of a value is its epoch as `metrics.csv` numbers it, from 1 (Keras counts from 0).

`metrics.csv` is the source of truth: every training session (a first run or a resume)
starts the event files afresh from its rows, then adds one step per epoch, so a run that
was killed and resumed has exactly one value per step and tag, the ones `metrics.csv` has.

The `tensorboard` package is not needed to write them: `tf.summary.write` with the
scalars and text plugins' metadata is what its `tf.summary.scalar` and `tf.summary.text`
do. Imported by `experiment.py` only, after `runtime.prepare()`.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import keras
import tensorflow as tf

from seqtrain import atomic
from seqtrain.errors import StorageError
from seqtrain.report import EPOCH_EXTRAS, GRADIENT_PREFIX, ordered_metrics

SPLITS = ("train", "validation")


def _metadata(plugin: str, data_class: str) -> tf.compat.v1.SummaryMetadata:
    return tf.compat.v1.SummaryMetadata(plugin_data={"plugin_name": plugin},
                                        data_class=data_class)


@contextlib.contextmanager
def _storage_errors(folder: Path) -> Iterator[None]:
    """A failed write (disk full, quota) as a StorageError naming `folder`: exit 1, a message.

    TensorFlow's writers report theirs as `tf.errors.OpError`, not OSError.
    """
    with atomic.storage_errors(folder):
        try:
            yield
        except tf.errors.OpError as err:
            raise StorageError(f"cannot write {folder}: {err.message}") from err


def _tag(key: str) -> str:
    """`epoch_loss` for `loss`, as Keras names them; `epoch_seconds` stays as it is."""
    return key if key.startswith("epoch_") else f"epoch_{key}"


class TensorBoardLog(keras.callbacks.Callback):
    """Writes each epoch's row of `metrics.csv` to the event files in `folder`.

    Place it right after `EpochLog` (whose `learning_rate` and `epoch_seconds` it records)
    and before any callback that may stop training in `on_epoch_end`: an epoch that
    reached `metrics.csv` reaches the event files too.

    Args:
        folder: `RUN_DIR/tensorboard`.
        config_text: The run's `config.yaml`, shown in TensorBoard's text tab.
    """

    def __init__(self, folder: Path, config_text: str):
        super().__init__()
        self.folder, self.config_text = folder, config_text
        self._writers: dict[str, tf.summary.SummaryWriter] = {}

    def start(self, rows: list[dict[str, float]]) -> None:
        """Delete the event files of earlier sessions and write `rows` (metrics.csv's) again.

        Raises:
            StorageError: The folder cannot be removed or written.
        """
        self.close()
        with _storage_errors(self.folder):
            if self.folder.exists():
                shutil.rmtree(self.folder)
            self.folder.mkdir()
            self._writers = {split: tf.summary.create_file_writer(str(self.folder / split))
                             for split in SPLITS}
            text = f"```yaml\n{self.config_text.rstrip()}\n```"  # markdown: kept as written
            with self._writers["train"].as_default():
                tf.summary.write("config", tf.constant(text), step=0,
                                 metadata=_metadata("text", "DATA_CLASS_TENSOR"))
            for row in rows:
                self._write(row)
        self._flush()

    def on_epoch_end(self, epoch, logs=None):
        with _storage_errors(self.folder):
            self._write({**(logs or {}), "epoch": epoch + 1})
        self._flush()  # a killed run keeps every epoch it logged

    def close(self) -> None:
        """Close the event files; safe to call twice.

        Every epoch was flushed as it ended, so nothing is left to lose here; a failure
        (the full disk that stopped the run) must not hide the error being raised.
        """
        for writer in self._writers.values():
            with contextlib.suppress(tf.errors.OpError, OSError):
                writer.close()
        self._writers = {}

    def _write(self, row: dict[str, float]) -> None:
        step = int(row["epoch"])
        scalars = _metadata("scalars", "DATA_CLASS_SCALAR")
        keys = [*ordered_metrics(row), *(k for k in EPOCH_EXTRAS if k in row),
                *(k for k in row if k.startswith(GRADIENT_PREFIX))]
        for split, writer in self._writers.items():
            with writer.as_default(step=step):
                for key in keys:
                    if key.startswith("val_") == (split == "validation"):
                        tf.summary.write(_tag(key.removeprefix("val_")),
                                         tf.constant(float(row[key]), tf.float32),
                                         metadata=scalars)

    def _flush(self) -> None:
        with _storage_errors(self.folder):
            atomic.inject_fault(self.folder / "events")  # SEQTRAIN_FAULT=enospc:events:N
            for writer in self._writers.values():
                writer.flush()
