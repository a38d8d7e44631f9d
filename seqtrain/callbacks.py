"""Keras callbacks that write the run directory and show progress.

Imported by `train.py` only, after `runtime.prepare()` has set up the environment, so
importing Keras at module level here is safe.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path

import keras
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from seqtrain.report import EPOCH_EXTRAS, ordered_metrics
from seqtrain.rundir import RunDir, atomic_write_text, fsync_dir


class EpochLog(keras.callbacks.Callback):
    """Adds `learning_rate` and `epoch_seconds` to the epoch logs and writes `metrics.csv`.

    Unlike `keras.callbacks.CSVLogger`, every row is written atomically (the whole small
    file is replaced), epochs are numbered from 1, and the columns have a fixed order.
    Place it first: later callbacks then see the added keys.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.rows: list[dict[str, float]] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate.numpy()))
        logs["epoch_seconds"] = time.perf_counter() - self._started
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        columns = ["epoch", *ordered_metrics(logs), *EPOCH_EXTRAS]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())


class Checkpoints(keras.callbacks.Callback):
    """Saves `last.keras` every epoch and `best.keras` when the monitored value improves.

    Written in place of `ModelCheckpoint(save_best_only=True)` to avoid its traps: a
    missing monitored value is an error rather than a save every epoch, a NaN is never
    "best" yet does not stop later epochs from becoming best, and both files are replaced
    atomically (temporary file, fsync, rename).
    """

    def __init__(self, run: RunDir, monitor: str = "val_loss", mode: str = "min"):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.run, self.monitor, self.mode = run, monitor, mode
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_logs: dict[str, float] = {}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(f"monitored metric {self.monitor!r} not in the epoch logs {list(logs)}")
        current = float(logs[self.monitor])
        if math.isfinite(current) and (
            self.best is None
            or (current < self.best if self.mode == "min" else current > self.best)
        ):
            self.best, self.best_epoch = current, epoch + 1
            self.best_logs = {k: float(v) for k, v in logs.items()}
            self._save(self.run.checkpoint("best"))
        self._save(self.run.checkpoint("last"))

    def _save(self, path: Path) -> None:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.keras")  # Keras insists on the suffix
        self.model.save(tmp, overwrite=True)
        with open(tmp, "rb") as file:
            os.fsync(file.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)


class DivergenceGuard(keras.callbacks.TerminateOnNaN):
    """`TerminateOnNaN` that records where the loss diverged instead of printing it."""

    def __init__(self):
        super().__init__()
        self.diverged_at: int | None = None  # the 1-based epoch
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            # Only the epoch: with steps_per_execution > 1 the batch index Keras reports
            # is the end of a block of steps, not where the loss broke.
            self.diverged_at = self._epoch + 1
            self.model.stop_training = True


def format_logs(logs: dict, digits: int = 4) -> str:
    """`loss 0.1234  accuracy 0.9876  val_loss ...` for a progress line."""
    return "  ".join(f"{k} {float(logs[k]):.{digits}f}" for k in ordered_metrics(logs))


class PlainProgress(keras.callbacks.Callback):
    """One line per epoch: for logs, CI and shell loops where stderr is not a terminal."""

    def __init__(self, console: Console):
        super().__init__()
        self.console = console

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = logs.get("epoch_seconds", 0.0)
        self.console.print(
            f"epoch {epoch + 1}/{self.params['epochs']}  {format_logs(logs)}  {seconds:.1f}s",
            markup=False, highlight=False, soft_wrap=True,
        )


class RichProgress(keras.callbacks.Callback):
    """Epoch and batch bars with live metrics, redrawn at most 10 times a second."""

    def __init__(self, console: Console, refresh_seconds: float = 0.1):
        super().__init__()
        self.console = console
        self.refresh_seconds = refresh_seconds
        self.progress: Progress | None = None
        self._last_update = 0.0

    def on_train_begin(self, logs=None):
        self.progress = Progress(
            TextColumn("{task.description:>6}"), BarColumn(bar_width=20), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[metrics]}"),
            console=self.console, refresh_per_second=10,
        )
        self.progress.start()
        self._epochs = self.progress.add_task("epoch", total=self.params["epochs"], metrics="")
        self._batches = self.progress.add_task("batch", total=self.params.get("steps"), metrics="")

    def on_epoch_begin(self, epoch, logs=None):
        self.progress.reset(self._batches, total=self.params.get("steps"), metrics="")

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self._last_update >= self.refresh_seconds:
            self._last_update = now
            self.progress.update(self._batches, completed=batch + 1, metrics=self._fit(logs))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.progress.update(self._batches, completed=self.params.get("steps"))
        self.progress.update(self._epochs, advance=1, metrics=self._fit(logs))
        self.progress.console.print(
            f"epoch {epoch + 1}/{self.params['epochs']}  {format_logs(logs)}  "
            f"{logs.get('epoch_seconds', 0.0):.1f}s", markup=False, highlight=False, soft_wrap=True,
        )

    def on_train_end(self, logs=None):
        self.close()

    def _fit(self, logs: dict | None) -> str:
        """The metrics, cut to what is left of the line: a narrow terminal keeps its bars."""
        text = format_logs(logs or {})
        room = self.console.width - 50  # description, bar, count and time take about 50
        return text if len(text) <= room else text[: max(room - 1, 0)] + "…"

    def close(self) -> None:
        """Stop redrawing; safe to call twice, and after an interrupt."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
