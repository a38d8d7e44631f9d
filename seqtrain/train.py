"""`seqtrain run`: train one experiment into a new run directory.

The order matters: everything the user can get wrong (config, device, data) is checked
before the run directory is created, so bad input leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from seqtrain import __version__, runtime
from seqtrain.config import ExperimentConfig, dump_config
from seqtrain.data import build_dataset
from seqtrain.report import ordered_metrics
from seqtrain.rundir import RunDir, atomic_write_json, atomic_write_text, create_run_dir

Display = Literal["rich", "plain", "quiet"]
MONITOR, MODE = "val_loss", "min"


def run_experiment(
    config: ExperimentConfig,
    *,
    runs_dir: Path | None = None,
    exact_dir: Path | None = None,
    command: str = "",
    overrides: Iterable[str] = (),
    display: Display = "plain",
    console: Console | None = None,
) -> tuple[RunDir, dict[str, Any]]:
    """Train `config` and write everything it produced to a new run directory.

    Args:
        config: A validated experiment.
        runs_dir: Parent folder for a generated run directory name (default `runs/`).
        exact_dir: Exact path of the new run directory instead.
        command: The command line, recorded in `overrides.txt`.
        overrides: The `--set` strings, recorded in `overrides.txt`.
        display: Progress on `console`: live bars, a line per epoch, or nothing.
        console: Where progress goes (stderr by default).

    Returns:
        The run directory and its summary. The summary's `status` is `completed`,
        `diverged` (loss became NaN/Inf) or `interrupted` (Ctrl-C).

    Raises:
        SeqtrainError: Bad device or run directory; nothing was written.
    """
    console = console or Console(stderr=True)
    started_at = _now()
    devices = runtime.select_device(config.device)
    runtime.seed_everything(config.seed, config.runtime.deterministic)
    dataset = build_dataset(config.data, config.seed)
    from seqtrain import callbacks as cb
    from seqtrain.evaluate import evaluate_split, load_checkpoint
    from seqtrain.models import build_model, compile_model

    run = create_run_dir(config.name, runs_dir=runs_dir, exact=exact_dir)
    atomic_write_text(run.config, dump_config(config))
    atomic_write_text(run.overrides, f"# {command}\n" + "".join(f"{o}\n" for o in overrides))
    atomic_write_json(run.env, _environment(devices, started_at))
    model = build_model(config.model, dataset.spec, name=config.name)
    compile_model(model, config.train)
    summary = _new_summary(config, run, started_at, model.count_params(), len(dataset.train),
                           devices.used)
    atomic_write_json(run.summary, summary)

    epoch_log = cb.EpochLog(run.metrics)
    checkpoints = cb.Checkpoints(run, monitor=MONITOR, mode=MODE)
    guard = cb.DivergenceGuard()
    progress = {"rich": cb.RichProgress, "plain": cb.PlainProgress}.get(display)
    progress = progress(console) if progress else None
    clock = time.perf_counter()
    try:
        model.fit(
            dataset.train.x, dataset.train.y, sample_weight=dataset.train.sample_weight,
            validation_data=_as_tuple(dataset.val),
            batch_size=config.train.batch_size, epochs=config.train.epochs,
            shuffle=config.train.shuffle, verbose=0,
            callbacks=[epoch_log, guard, checkpoints] + ([progress] if progress else []),
        )
        status = "diverged" if guard.diverged_at else "completed"
    except KeyboardInterrupt:
        status = "interrupted"
    except BaseException as err:
        _record_results(summary, epoch_log, checkpoints, time.perf_counter() - clock, "failed")
        summary["error"] = f"{type(err).__name__}: {err}"
        atomic_write_json(run.summary, summary)
        raise
    finally:
        if isinstance(progress, cb.RichProgress):
            progress.close()  # also after an interrupt, which skips on_train_end
    _record_results(summary, epoch_log, checkpoints, time.perf_counter() - clock, status)
    if guard.diverged_at:
        summary["error"] = (
            f"loss became NaN or infinite in epoch {guard.diverged_at}; try a lower "
            f"train.learning_rate (now {config.train.learning_rate}) or set train.clipnorm "
            "(for example 1.0)"
        )
    atomic_write_json(run.summary, summary)  # complete before the test split is evaluated
    if status != "interrupted" and run.checkpoint("best").is_file():
        best = load_checkpoint(run.checkpoint("best"))
        summary["test"] = evaluate_split(best, dataset.test, config.train.batch_size)
        atomic_write_json(run.summary, summary)
    return run, summary


def _new_summary(config: ExperimentConfig, run: RunDir, started_at: str, num_params: int,
                 num_train_samples: int, devices: list[str]) -> dict[str, Any]:
    """`summary.json` of a run that has just started: every key, results still empty."""
    return {
        "status": "running",
        "name": config.name,
        "run_dir": str(run.path.resolve()),
        "started_at": started_at,
        "ended_at": None,
        "epochs": config.train.epochs,
        "epochs_run": 0,
        "monitor": MONITOR,
        "mode": MODE,
        "best_epoch": None,
        "best": {},
        "final": {},
        "test": {},
        "num_params": num_params,
        "num_train_samples": num_train_samples,
        "wall_seconds": None,
        "train_seconds": None,
        "samples_per_second": None,
        "devices": devices,
        "error": None,
    }


def _record_results(summary: dict[str, Any], epoch_log, checkpoints, train_seconds: float,
                    status: str) -> None:
    """Fill the summary's results from what the callbacks recorded."""
    rows = epoch_log.rows

    def metrics(row: dict[str, float]) -> dict[str, float]:
        return {name: row[name] for name in ordered_metrics(row) if name != "epoch"}

    started = datetime.fromisoformat(summary["started_at"])
    summary.update(
        status=status,
        ended_at=_now(),
        epochs_run=len(rows),
        best_epoch=checkpoints.best_epoch,
        best=metrics(checkpoints.best_logs) if checkpoints.best_logs else {},
        final=metrics(rows[-1]) if rows else {},
        wall_seconds=round((datetime.now(timezone.utc) - started).total_seconds(), 3),
        train_seconds=round(train_seconds, 3),
        samples_per_second=(
            round(summary["num_train_samples"] * len(rows) / train_seconds, 1) if rows else None
        ),
    )


def _as_tuple(split):
    if split.sample_weight is None:
        return (split.x, split.y)
    return (split.x, split.y, split.sample_weight)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _environment(devices: runtime.Devices, started_at: str) -> dict[str, Any]:
    """What `env.json` records: versions, devices, host, time and source commit."""
    return {
        "seqtrain": __version__,
        **runtime.versions(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "device_requested": devices.requested,
        "devices": devices.used,
        "device_details": [json.loads(json.dumps(d, default=str)) for d in devices.details],
        "started_at": started_at,
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    """The commit of seqtrain's own source, when it runs from a git checkout."""
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
