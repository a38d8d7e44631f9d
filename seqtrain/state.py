"""What `seqtrain resume` restores, and how it is saved so a crash never mixes two moments.

A resumable state is two files in `checkpoints/`:

    state-e0003-s0000.keras   weights and optimizer state (step count, moments)
    resume.json               everything else, and the name of that .keras file

The .keras file is written first, under a new name; `resume.json` is replaced atomically
last and is the commit point; older state files are deleted only after it. A crash at any
instant therefore leaves `resume.json` naming a complete state.

Keras' `BackupAndRestore` restores weights, optimizer and epoch; this adds what it leaves
out: the dropout seed generators' state, the position inside an epoch, the running epoch
metrics of a mid-epoch stop, and the best-so-far value behind `best.keras`.

Imported only after `runtime.prepare()`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from seqtrain import atomic
from seqtrain.checkpoints import check_archive
from seqtrain.data import Split
from seqtrain.errors import RunDirError
from seqtrain.report import describe_point
from seqtrain.rundir import RunDir


@dataclass
class TrainingState:
    """A moment of training, enough to continue it exactly.

    Attributes:
        epoch: The 0-based epoch to continue with (`epochs_done` when `step` is 0).
        step: Batches of `epoch` already trained (0 at an epoch boundary).
        model_file: The .keras file in `checkpoints/` with weights and optimizer state.
        seed_states: Each dropout seed generator's state, in `model.variables` order.
        metric_states: At a mid-epoch stop, the running totals of the epoch's metrics.
        best: Best monitored value so far (behind `best.keras`), None before any.
        best_epoch: Its 1-based epoch.
        best_logs: All metrics of that epoch.
        train_seconds: Training time spent before this moment, across sessions.
        callbacks: Counters of early stopping and reduce_on_plateau, by callback name.
    """

    epoch: int
    step: int
    model_file: str
    seed_states: list[list[int]]
    metric_states: list[list[float]] | None = None
    best: float | None = None
    best_epoch: int | None = None
    best_logs: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    callbacks: dict[str, dict] = field(default_factory=dict)


def seed_variables(model: keras.Model) -> list:
    """The model's random-seed state variables (dropout): in `variables` but not `weights`."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def metric_variables(model: keras.Model) -> list:
    """The running totals of the compiled loss and metrics."""
    return [v for metric in model.metrics for v in metric.variables]


def save_model(model: keras.Model, path: Path) -> None:
    """`model.save` (weights and optimizer) to `path`, atomically."""
    with atomic.storage_errors(path):
        tmp = atomic.temporary_path(path, suffix=".keras")  # Keras insists on the suffix
        model.save(tmp, overwrite=True)
        atomic.commit(tmp, path)


def save_state(run: RunDir, model: keras.Model, state: TrainingState,
               saved_as: Path | None = None) -> None:
    """Write a resumable state: its .keras file, then `resume.json`; drop older states.

    `state.model_file` and `state.seed_states` are filled in here. `saved_as` is a file
    the model was saved to at this very point (the best checkpoint of this epoch): the
    state copies its bytes instead of serialising the model again (a copy is cheaper).
    """
    state.model_file = f"state-e{state.epoch:04d}-s{state.step:06d}.keras"
    state.seed_states = [np.asarray(v.numpy()).tolist() for v in seed_variables(model)]
    if saved_as is not None:  # a copy, not a link: damage to one file stays in that file
        atomic.write_bytes(run.checkpoints / state.model_file, saved_as.read_bytes())
    else:
        save_model(model, run.checkpoints / state.model_file)
    atomic.write_json(run.resume_state, asdict(state))
    for old in run.checkpoints.glob("state-*.keras"):
        if old.name != state.model_file:
            old.unlink(missing_ok=True)


def load_state(run: RunDir) -> TrainingState | None:
    """The last committed state, or None if the run never saved one.

    Raises:
        RunDirError: `resume.json` or the file it names is missing or damaged.
    """
    if not run.resume_state.exists():
        return None
    try:
        state = TrainingState(**json.loads(run.resume_state.read_text()))
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{run.resume_state} is damaged ({err}); the run cannot be resumed "
                          "exactly. Start a new run") from None
    path = run.checkpoints / state.model_file
    if not path.is_file():
        raise RunDirError(f"{path}, named by {run.resume_state}, is missing; the run cannot "
                          "be resumed")
    check_archive(path)
    return state


def restore(model: keras.Model, run: RunDir, state: TrainingState) -> None:
    """Load weights, optimizer state and seed states into a freshly compiled `model`.

    Raises:
        RunDirError: The state's .keras file does not load, or does not fit the model
            built from the run's config.
    """
    path = run.checkpoints / state.model_file
    if not model.optimizer.built:  # `compile_model` builds it; else load_weights skips it
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(path)
    except Exception as err:  # a damaged or foreign file is bad input, not a bug
        raise RunDirError(f"checkpoint {path} cannot be loaded ({type(err).__name__}: {err}); "
                          "it is damaged or does not match the run's config.yaml") from None
    seeds = seed_variables(model)
    if len(seeds) != len(state.seed_states):
        raise RunDirError(f"{run.resume_state} holds {len(state.seed_states)} seed states but "
                          f"the model has {len(seeds)}; it does not match config.yaml")
    for variable, value in zip(seeds, state.seed_states, strict=True):
        variable.assign(np.asarray(value, dtype=variable.dtype))


def build_metrics(model: keras.Model, split: Split) -> None:
    """Create the compiled metrics' variables now, so saved running totals can be put back.

    Without a distribution strategy Keras builds them lazily, when the first training
    step is traced, which is too late to continue an interrupted epoch's totals. One
    evaluation batch (a sample per replica) builds them; it touches no weight or optimizer
    state, but it does advance the dropout seed generators (measured), so call it before
    `restore`.
    """
    n = model.distribute_strategy.num_replicas_in_sync  # a sample for every replica
    first = split.take(slice(n))
    model.evaluate(first.x, first.y, sample_weight=first.sample_weight, batch_size=n, verbose=0)


def describe(state: TrainingState) -> str:
    """'after epoch 3' or 'in epoch 4 after batch 20' (1-based, as users count)."""
    return describe_point(state.epoch, state.step)
