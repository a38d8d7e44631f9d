"""Re-evaluate a finished run from its directory alone: config, seed and checkpoint."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqtrain import __version__, atomic, runtime
from seqtrain.checkpoints import check_checkpoint_name, checkpoint_file, load_checkpoint
from seqtrain.config import load_config
from seqtrain.data import Split, build_dataset
from seqtrain.errors import ConfigError, DataError, RunDirError
from seqtrain.report import ordered_metrics
from seqtrain.rundir import (
    changed_files,
    open_run_dir,
    read_json,
    read_run_config,
    stored_preprocessing,
)

if TYPE_CHECKING:
    import keras

# What the model was trained on, fixed by the run's preprocessing.json: not a data.* to change.
FIXED_BY_THE_RUN = ("data.normalization", "data.lowercase", "data.max_tokens")

def evaluate_split(model: keras.Model, split: Split, batch_size: int) -> dict[str, float]:
    """The model's loss and metrics on one split, with its sample weights."""
    from seqtrain.pipeline import evaluation_dataset

    results = model.evaluate(evaluation_dataset(split, batch_size), verbose=0,
                             return_dict=True)
    return {name: float(results[name]) for name in ordered_metrics(results)}


def evaluate_run(path: Path, checkpoint: str = "best", device: str = "auto",
                 overrides: list[str] = (), inputs: Path | None = None) -> dict[str, Any]:
    """Evaluate one of a run's checkpoints on its test split, or on every sequence of a file.

    Args:
        path: The run directory.
        checkpoint: `best` or `last`.
        device: Where to evaluate (the run's own device may not exist on this machine).
        overrides: `data.*=value` changes: evaluate on data the model never saw (longer
            sequences, say). The result then goes to `eval-<hash>.json`, not `eval.json`.
        inputs: A file in the form the run's task reads, with targets: every window or
            sequence of it is scored (with the run's stored statistics), not only a test
            fraction. The result goes to `eval-<hash>.json`, the hash of its path and content.

    Returns:
        What was written: the checkpoint, overrides or input, size and metrics.

    Raises:
        RunDirError: Not a run directory, or the checkpoint is missing or damaged.
        ConfigError: An override that is not `data.*`, or data the model cannot read.
        DataError: An input file that does not fit the run or holds no targets.
    """
    check_checkpoint_name(checkpoint)
    run = open_run_dir(path)
    config = read_run_config(run)
    overrides = list(overrides)
    outside = [o for o in overrides if not o.strip().startswith("data.")]
    if outside:
        raise ConfigError("--set", [f"eval takes only data.* overrides (the model is fixed by "
                                    f"the run), got: {', '.join(outside)}"])
    fixed = [o for o in overrides if o.strip().split("=")[0].strip() in FIXED_BY_THE_RUN]
    if fixed:
        raise ConfigError("--set", [f"{fixed[0]}: the model was trained on the run's own "
                                    "normalization, statistics and vocabulary "
                                    "(preprocessing.json); eval applies those"])
    if overrides and inputs is not None:
        raise ConfigError("--set", ["give INPUT or --set data.*=..., not both: INPUT is read "
                                    "with the run's own data settings"])
    if overrides:
        config = load_config(run.config, overrides)
    checkpoint_path = checkpoint_file(run, checkpoint)
    from seqtrain import tuning

    try:  # as the run resolved its speed layer: the computation it trained with
        summary = read_json(run.summary)
    except RunDirError:
        summary = None
    recorded = tuning.recorded(summary or {})
    started: list = []

    def start():  # TensorFlow, once: after an input file is checked, before it is tokenised
        if not started:
            started.append(tuning.select(config, tuning.choose(config, recorded), device=device,
                                         training=False))
        return started[0]

    part = None
    if inputs is not None:  # read and checked before TensorFlow starts
        from seqtrain.trained import TrainedRun

        try:
            part = TrainedRun(path, checkpoint, device, start=start).prepare(inputs,
                                                                           targets=True)
        except DataError as err:
            if "has no column" in str(err) or "has no array" in str(err):
                raise DataError(f"{err}\n(eval scores a file against its targets; "
                                "`seqtrain predict` takes files without them)") from None
            raise
        if part.sample_weight is not None and not part.sample_weight.any():
            raise DataError(f"{inputs}: no step of it has a target to score (each sequence "
                            "is too short for the task's targets)")
    _, chosen = start()
    runtime.seed_everything(config.seed, config.runtime.deterministic)
    if part is None:
        part = build_dataset(config.data, config.seed, bool(config.model.embedding_dim),
                             stored_preprocessing(run, config.data.task)).test
    model = tuning.install(load_checkpoint(checkpoint_path), chosen)
    expected = tuple(model.input_shape[2:])
    if tuple(part.x.shape[2:]) != expected:
        raise ConfigError("--set", [
            f"the model reads steps of shape {expected}, the overridden data gives "
            f"{tuple(part.x.shape[2:])}: change only what keeps the inputs alike "
            "(sequence_length, num_samples, shift, seeds...)"])
    metrics = evaluate_split(model, part, config.train.batch_size)
    result = {
        "warnings": changed_files(run, config) if inputs is None else [],
        "run_dir": str(run.path.resolve()),
        "checkpoint": checkpoint,
        "overrides": overrides,
        "split": "test" if inputs is None else "input",
        "num_samples": len(part),
        "metrics": metrics,
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seqtrain_version": __version__,
    }
    target = run.eval
    if overrides:
        digest = hashlib.sha256("\n".join(sorted(overrides)).encode()).hexdigest()[:8]
        target = run.path / f"eval-{digest}.json"
    elif inputs is not None:
        from seqtrain.data.registry import file_digest

        sha256 = file_digest(Path(inputs))
        result["input"] = {"path": str(Path(inputs).resolve()), "sha256": sha256}
        digest = hashlib.sha256(f"{Path(inputs).resolve()}\n{sha256}".encode()).hexdigest()[:8]
        target = run.path / f"eval-{digest}.json"
    result["file"] = target.name
    atomic.write_json(target, result)
    return result
