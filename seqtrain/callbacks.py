"""Keras callbacks that write the run directory, keep it resumable, and show progress.

Imported by `experiment.py` only, after `runtime.prepare()` has set up the environment, so
importing Keras at module level here is safe.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from seqtrain import atomic
from seqtrain.report import EPOCH_EXTRAS, GRADIENT_PREFIX, ordered_metrics
from seqtrain.rundir import RunDir
from seqtrain.signals import StopRequest, TrainingInterrupted
from seqtrain.state import TrainingState, metric_variables, save_model, save_state


class EpochLog(keras.callbacks.Callback):
    """Adds `learning_rate` and `epoch_seconds` to the epoch logs and writes `metrics.csv`.

    Unlike `keras.callbacks.CSVLogger`, the file is replaced atomically at every epoch (it
    is small), epochs are numbered from 1, the columns have a fixed order, and a resumed
    run starts from the rows of the epochs its state covers, so there is exactly one row
    per epoch. Place it first: later callbacks then see the added keys.
    """

    def __init__(self, path: Path, rows: list[dict[str, float]] | None = None):
        super().__init__()
        self.path = path
        self.rows: list[dict[str, float]] = list(rows or [])
        self._started = 0.0

    @staticmethod
    def read(path: Path, epochs: int) -> list[dict[str, float]]:
        """The rows of epochs 1..`epochs` of an existing `metrics.csv`."""
        if not path.exists():
            return []
        with open(path, newline="") as file:
            # An empty cell: a column a later session added (a run from an older release).
            rows = [{k: float(v) for k, v in row.items() if v not in ("", None)}
                    for row in csv.DictReader(file)]
        return [row for row in rows if row["epoch"] <= epochs]

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate.numpy()))
        logs["epoch_seconds"] = time.perf_counter() - self._started
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        self.write()

    def write(self) -> None:
        """Replace `metrics.csv` with the current rows."""
        if not self.rows:  # a resume from before the first epoch ended
            self.path.unlink(missing_ok=True)
            return
        last = self.rows[-1]
        columns = ["epoch", *ordered_metrics(last), *EPOCH_EXTRAS,
                   *(key for key in last if key.startswith(GRADIENT_PREFIX))]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "epoch": int(row["epoch"])} for row in self.rows)
        atomic.write_text(self.path, buffer.getvalue())


class BestCheckpoint(keras.callbacks.Callback):
    """Saves `best.keras` when the monitored value improves.

    Written in place of `ModelCheckpoint(save_best_only=True)` to avoid its traps: a
    missing monitored value is an error rather than a save every epoch, a NaN is never
    best yet does not stop later epochs from becoming best, `mode` is explicit, the file
    is replaced atomically, and the best-so-far value can be restored on resume.
    """

    def __init__(self, run: RunDir, monitor: str, mode: str, best: float | None = None,
                 best_epoch: int | None = None, best_logs: dict[str, float] | None = None):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.run, self.monitor, self.mode = run, monitor, mode
        self.best, self.best_epoch = best, best_epoch
        self.best_logs: dict[str, float] = dict(best_logs or {})

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
            self.run.checkpoints.mkdir(exist_ok=True)
            save_model(self.model, self.run.checkpoint("best"))


class ResumableState(keras.callbacks.Callback):
    """Keeps the run resumable: saves its state, restores a mid-epoch one, obeys stop requests.

    Saves a `TrainingState` every `checkpoint_every` epochs and after the last one (then
    also points `last.keras` at it), every `backup_every_steps` batches inside an epoch,
    and when a stop was requested, after which it raises `TrainingInterrupted`.

    Args:
        run: The run directory.
        best: The `BestCheckpoint`, whose value is part of the state.
        stop: The signal flag to obey.
        epochs: The configured number of epochs (the last one is always saved).
        checkpoint_every: Epochs between states.
        backup_every_steps: Batches between mid-epoch states; None for none.
        step_offset: Batches of the first epoch already trained before this `fit` (a
            mid-epoch resume feeds only the rest).
        metric_states: Running metric totals to put back at the start of that epoch.
        train_seconds: Training time of earlier sessions.
        counters: Callbacks with `name` and `state()` (early stopping, plateau) whose
            counters are part of the state.
        on_save: Called after each state is saved (the summary is brought up to date).
        stopping: Says whether another callback ends training at this epoch (a search's
            pruner): its state is saved then, whatever `checkpoint_every` says.
    """

    def __init__(self, run: RunDir, best: BestCheckpoint, stop: StopRequest, epochs: int,
                 checkpoint_every: int = 1, backup_every_steps: int | None = None,
                 step_offset: int = 0, metric_states: list | None = None,
                 train_seconds: float = 0.0, counters: list | None = None,
                 on_save: Callable[[], None] | None = None,
                 stopping: Callable[[], bool] | None = None):
        super().__init__()
        self.on_save, self.stopping = on_save, stopping
        self.run, self.best, self.stop, self.epochs = run, best, stop, epochs
        self.counters = list(counters or [])
        self.checkpoint_every, self.backup_every_steps = checkpoint_every, backup_every_steps
        self.step_offset, self.metric_states = step_offset, metric_states
        self.train_seconds_before = train_seconds
        self._clock = time.perf_counter()
        self.last_state: TrainingState | None = None
        self._epoch = 0
        self._last_backup_step = 0

    @property
    def train_seconds(self) -> float:
        return self.train_seconds_before + time.perf_counter() - self._clock

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._last_backup_step = self.step_offset
        if self.metric_states is not None:
            # Keras has just reset the metrics; continue the interrupted epoch's totals.
            variables = metric_variables(self.model)
            for variable, value in zip(variables, self.metric_states, strict=True):
                variable.assign(np.asarray(value, dtype=variable.dtype))
            self.metric_states = None

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 >= self.params["steps"]:
            return  # the epoch's last batch: on_epoch_end saves (and obeys a stop) next
        step = self.step_offset + batch + 1
        due = (self.backup_every_steps
               and step - self._last_backup_step >= self.backup_every_steps)
        if self.stop.requested or due:
            metrics = [np.asarray(v.numpy()).tolist() for v in metric_variables(self.model)]
            self._save(self._epoch, step, metric_states=metrics)
            self._last_backup_step = step
        if self.stop.requested:
            raise TrainingInterrupted(self.stop.signum)

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset = 0
        done = epoch + 1
        ending = self.stopping is not None and self.stopping()
        if (done % self.checkpoint_every == 0 or done >= self.epochs or self.stop.requested
                or ending):
            self._save(done, 0)
            atomic.link(self.run.checkpoints / self.last_state.model_file,
                        self.run.checkpoint("last"))
        if self.stop.requested:
            raise TrainingInterrupted(self.stop.signum)

    def _save(self, epoch: int, step: int, metric_states: list | None = None) -> None:
        self.run.checkpoints.mkdir(exist_ok=True)
        self.last_state = TrainingState(
            epoch=epoch, step=step, model_file="", seed_states=[], metric_states=metric_states,
            best=self.best.best, best_epoch=self.best.best_epoch, best_logs=self.best.best_logs,
            train_seconds=self.train_seconds,
            callbacks={callback.name: callback.state() for callback in self.counters},
        )
        # At the end of an epoch that set a new best, best.keras holds this very model.
        just_saved = step == 0 and self.best.best_epoch == epoch
        save_state(self.run, self.model, self.last_state,
                   self.run.checkpoint("best") if just_saved else None)
        if self.on_save is not None:
            self.on_save()


class _Resumable:
    """A Keras callback whose counters, named in `STATE`, survive a resume.

    Keras resets them in `on_train_begin`: here only the first time, after which the
    counters of the interrupted run are put back; a second `fit` call in the same process
    (a mid-epoch resume makes two) keeps them as they are.
    """

    STATE: tuple[str, ...] = ()
    name = ""

    def __init__(self, *args, state: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._restored = dict(state or {})
        self._begun = False

    def on_train_begin(self, logs=None):
        if self._begun:
            return
        self._begun = True
        super().on_train_begin(logs)
        for key, value in self._restored.items():
            setattr(self, key, value)

    def state(self) -> dict:
        values = {key: getattr(self, key, None) for key in self.STATE}
        return {k: float(v) if isinstance(v, (np.floating, float)) else v
                for k, v in values.items()}


class EarlyStopping(_Resumable, keras.callbacks.EarlyStopping):
    """Keras' `EarlyStopping` with an explicit mode and counters that survive a resume.

    The best weights need no copy in memory: seqtrain evaluates `best.keras`, picked by
    the same monitor.
    """

    STATE = ("wait", "best", "best_epoch", "stopped_epoch")
    name = "early_stopping"


class ReduceLROnPlateau(_Resumable, keras.callbacks.ReduceLROnPlateau):
    """Keras' `ReduceLROnPlateau` whose counters survive a resume.

    The learning rate itself is optimizer state, saved with the weights.
    """

    STATE = ("wait", "best", "cooldown_counter")
    name = "reduce_on_plateau"


class ReportToStudy(keras.callbacks.Callback):
    """A search trial's run: reports its objective to the study each epoch, stops if pruned.

    Place it before `ResumableState`, which then saves the state of the pruned epoch: a
    pruned trial can be resumed (`seqtrain resume`) like any run.
    """

    def __init__(self, report, epochs: int):
        super().__init__()
        self.report = report  # a study.TrialReport
        self.epochs = epochs  # train.epochs: a resumed part-epoch's fit ends sooner
        self.pruned_at: int | None = None

    def stopping(self) -> bool:
        """Whether the pruner has stopped the run."""
        return self.pruned_at is not None

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 >= self.epochs
        if self.report.report(epoch + 1, {k: float(v) for k, v in (logs or {}).items()}, last):
            self.pruned_at = epoch + 1
            self.model.stop_training = True


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


def epoch_line(epoch: int, epochs: int, logs: dict) -> str:
    """`epoch 3/10  loss ...  val_accuracy ...  0.7s`: the line both displays print."""
    return (f"epoch {epoch + 1}/{epochs}  {format_logs(logs)}  "
            f"{logs.get('epoch_seconds', 0.0):.1f}s")


class PlainProgress(keras.callbacks.Callback):
    """One line per epoch: for logs, CI and shell loops where stderr is not a terminal.

    Args:
        console: Where the lines go.
        epochs: The run's epochs (a resumed run's `fit` may cover only some of them).
        steps: Batches per epoch.
        first_step: Batches of the first epoch trained before (a mid-epoch resume).
        notes: Warnings to add to an epoch's line, by 1-based epoch (the gradient probe's).
    """

    def __init__(self, console: Console, epochs: int, steps: int, first_step: int = 0,
                 notes: Callable[[int], list[str]] | None = None):
        super().__init__()
        self.console, self.epochs = console, epochs
        self.steps, self.step_offset = steps, first_step
        self.notes = notes

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset = 0
        self._print(self._line(epoch, logs or {}))

    def _line(self, epoch: int, logs: dict) -> str:
        """The epoch's line, with the warnings first raised in it."""
        notes = self.notes(epoch + 1) if self.notes else []
        return "  ".join([epoch_line(epoch, self.epochs, logs),
                          *(f"warning: {note}" for note in notes)])

    def _print(self, line: str) -> None:
        try:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        except BrokenPipeError:  # nobody reads stderr any more: train on, silently
            self.console.quiet = True


class RichProgress(PlainProgress):
    """Epoch and batch bars with live metrics, redrawn at most 10 times a second."""

    def __init__(self, console: Console, epochs: int, steps: int, first_step: int = 0,
                 notes: Callable[[int], list[str]] | None = None, refresh_seconds: float = 0.1):
        super().__init__(console, epochs, steps, first_step, notes)
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
        self._epochs = self.progress.add_task("epoch", total=self.epochs, metrics="")
        self._batches = self.progress.add_task("batch", total=self.steps, metrics="")

    def on_epoch_begin(self, epoch, logs=None):
        self.progress.update(self._epochs, completed=epoch)
        self.progress.reset(self._batches, total=self.steps, completed=self.step_offset,
                            metrics="")

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self._last_update >= self.refresh_seconds:
            self._last_update = now
            self.progress.update(self._batches, completed=self.step_offset + batch + 1,
                                 metrics=self._fit(logs))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.progress.update(self._batches, completed=self.steps)
        self.progress.update(self._epochs, completed=epoch + 1, metrics=self._fit(logs))
        self.step_offset = 0
        self._print(self._line(epoch, logs))

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
