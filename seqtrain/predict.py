"""`seqtrain predict`: a trained run's predictions for new inputs or for one of its splits.

Everything the run learned from its training split is applied from the run directory alone
(`TrainedRun`); the input is read and checked before TensorFlow starts, so a file that does
not fit the run is refused at once and nothing is written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from seqtrain.errors import SeqtrainError
from seqtrain.predictions import Predictions, output_format
from seqtrain.rundir import check_destination
from seqtrain.trained import TrainedRun


def check_output(output: Path, run_dir: Path, inputs: Path | None) -> None:
    """Refuse an output file that cannot be written, or would overwrite what it must not.

    Raises:
        SeqtrainError: An unknown extension, a missing folder, a path inside the run
            directory, or the input file itself.
    """
    if output.is_dir():
        raise SeqtrainError(f"-o {output} is a folder; give a file name such as "
                            f"{output / 'predictions.csv'}")
    output_format(output)
    check_destination(output, run_dir, "write the predictions elsewhere")
    if inputs is not None and output.resolve() == Path(inputs).resolve():
        raise SeqtrainError(f"-o {output} is the input file; write the predictions elsewhere")


def predict_run(path: Path, inputs: Path | None = None, *, split: str | None = None,
                output: Path | None = None, checkpoint: str = "best", device: str = "auto",
                batch_size: int | None = None, attention: bool = False
                ) -> tuple[Predictions, dict[str, Any]]:
    """Predict with a run's checkpoint, and write the predictions to `output` if given.

    Args:
        path: The run directory.
        inputs: A file in the form the run's task reads (see `TrainedRun.prepare`).
        split: Instead, the run's own `train`, `val` or `test` split, with true values.
        output: The file to write (`.csv`, `.jsonl` or `.npz`), atomically.
        checkpoint: `best` or `last`.
        device: Where the model runs.
        batch_size: Sequences per call of the model.
        attention: Add each sequence's attention weights per step (a run trained with
            `model.attention`).

    Returns:
        The predictions, and a report: what was predicted, where it went, how long each
        phase took, and the metrics when true values are known.

    Raises:
        SeqtrainError: A run, input, split, checkpoint or output the command cannot use.
    """
    started = time.perf_counter()
    if batch_size is not None and batch_size < 1:
        raise SeqtrainError(f"--batch-size got {batch_size}; expected 1 or more")
    trained = TrainedRun(path, checkpoint, device)
    if attention:
        trained.check_attention()
    if output is not None:
        check_output(Path(output), trained.path, inputs)
    part = trained.prepare(inputs, split)
    read = time.perf_counter()
    trained.model  # noqa: B018 (TensorFlow starts and the checkpoint loads: timed apart)
    loaded = time.perf_counter()
    outputs = trained.predict_arrays(part.x, batch_size)
    weights = trained.attention_arrays(part.x, batch_size) if attention else None
    predicted = time.perf_counter()
    predictions = Predictions(trained.preprocessing, outputs, part, with_true=split is not None,
                              attention=weights)
    if output is not None:
        predictions.write(output)
    summary = trained.summary if trained.run.summary.exists() else {}
    report: dict[str, Any] = {
        "run_dir": str(trained.path.resolve()),
        "checkpoint": checkpoint,
        "best_epoch": summary.get("best_epoch") if checkpoint == "best" else None,
        "input": None if inputs is None else str(Path(inputs).resolve()),
        "split": split,
        "num_samples": len(part),
        "output": None if output is None else str(output),
        "warnings": trained.warnings() if split is not None else [],
        "seconds": {"read": round(read - started, 4), "load": round(loaded - read, 4),
                    "predict": round(predicted - loaded, 4)},
    }
    if output is not None:
        report["seconds"]["write"] = round(time.perf_counter() - predicted, 4)
    if split is not None:
        report["metrics"] = predictions.metrics()
    return predictions, report
