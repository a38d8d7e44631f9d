"""The Python API: train from a config and use a trained run, in notebooks and scripts.

    import seqtrain

    run_dir = seqtrain.train("configs/csv_series_example.yaml", overrides=["train.epochs=5"])
    trained = seqtrain.load(run_dir)
    trained.predict("examples/load.csv").rows()   # or .arrays(), .write("forecast.csv")
    trained.model                                 # the plain Keras model

The same functions as the `seqtrain` command: `train` is `seqtrain run` (the same config
loading and training), `load(...).predict` is `seqtrain predict`. Importing seqtrain costs
no TensorFlow; it starts when a model is first built or loaded.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from seqtrain.errors import TrainingFailed
from seqtrain.trained import TrainedRun


def load(run_dir: str | os.PathLike, checkpoint: str = "best",
         device: str = "auto") -> TrainedRun:
    """Open a trained run to predict with it.

    Args:
        run_dir: A run directory made by `seqtrain run` or `train`.
        checkpoint: `best` or `last`.
        device: Where its model runs: auto, cpu, gpu or gpu:N.

    Returns:
        A `TrainedRun`: `.predict(inputs)`, `.config`, `.summary`, `.preprocessing` and
        `.model` (the plain Keras model, loaded on first use).

    Raises:
        SeqtrainError: Not a run directory, or the checkpoint is missing.
    """
    return TrainedRun(run_dir, checkpoint, device)


def train(config: str | os.PathLike | dict[str, Any], overrides: list[str] | tuple = (), *,
          runs_dir: str | os.PathLike | None = None, run_dir: str | os.PathLike | None = None,
          progress: bool = False) -> Path:
    """Train an experiment into a new run directory, as `seqtrain run` does.

    Args:
        config: An experiment YAML file, or the same content as a dict (relative data
            paths in a dict start at the current folder).
        overrides: `key.path=value` strings, as `--set` takes them.
        runs_dir: Parent folder of the generated run directory (default `runs/`).
        run_dir: The exact run directory to create instead; it must not exist.
        progress: Print a line per epoch on stderr.

    Returns:
        The run directory.

    Raises:
        ConfigError: The config does not validate (every problem listed).
        TrainingFailed: The loss diverged; the run directory says more.
        KeyboardInterrupt: Interrupted (Ctrl-C); `seqtrain resume` continues the run.
    """
    from seqtrain.config import load_config, validate_config

    overrides = list(overrides)
    if isinstance(config, dict):  # a deep copy: overrides must not change the caller's dict
        experiment = validate_config(copy.deepcopy(config), {}, overrides, source="<dict>")
        experiment = experiment.model_copy(
            update={"data": experiment.data.resolve_paths(Path.cwd())})
    else:
        experiment = load_config(config, overrides)
    from seqtrain.experiment import run_experiment

    finished, summary = run_experiment(
        experiment, runs_dir=Path(runs_dir) if runs_dir else None,
        exact_dir=Path(run_dir) if run_dir else None, command="seqtrain.train(...)",
        overrides=overrides, display="plain" if progress else "quiet")
    if summary["status"] == "interrupted":
        raise KeyboardInterrupt(f"training interrupted; continue it with `seqtrain resume "
                                f"{finished.path}`")
    if summary["status"] != "completed":
        raise TrainingFailed(f"run {finished.path} {summary['status']}: {summary.get('error')}")
    return finished.path
