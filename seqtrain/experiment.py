"""`seqtrain run` and `seqtrain resume`: train an experiment in its run directory.

The order matters: everything the user can get wrong (config, device, data) is checked
before a run directory is created, so bad input leaves nothing behind; and a resumed run
rebuilds exactly the state it stopped in (see `state.py`) before it trains on.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from seqtrain import __version__, atomic, resources, runtime, tuning
from seqtrain.config import ExperimentConfig, dump_config, load_config, monitor_mode, monitors
from seqtrain.data import Dataset, build_dataset
from seqtrain.data.registry import check_files, fingerprints
from seqtrain.errors import ConfigError, RunDirError, StorageError
from seqtrain.models import check_attention
from seqtrain.report import ordered_metrics
from seqtrain.rundir import (
    RunDir,
    RunLock,
    create_run_dir,
    open_run_dir,
    read_json,
    run_stem,
    stored_preprocessing,
)
from seqtrain.signals import StopRequest, TrainingInterrupted

Display = Literal["rich", "plain", "quiet"]


@dataclass
class _Session:
    """One process training one run: a first run or a resume."""

    config: ExperimentConfig
    devices: runtime.Devices
    tuning: tuning.Tuning
    stop: StopRequest
    run: RunDir
    dataset: Dataset
    summary: dict[str, Any]
    display: Display
    console: Console
    report: Any = None  # a search trial's `study.TrialReport`


def run_experiment(
    config: ExperimentConfig,
    *,
    runs_dir: Path | None = None,
    exact_dir: Path | None = None,
    command: str = "",
    overrides: Iterable[str] = (),
    display: Display = "plain",
    console: Console | None = None,
    report=None,
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
        report: A search trial's `study.TrialReport`: the run reports its objective each
            epoch and stops when the study's pruner says so.

    Returns:
        The run directory and its summary. The summary's `status` is `completed`,
        `diverged` (loss became NaN/Inf), `interrupted` (a signal; `signal` names it) or
        `pruned` (a search's pruner stopped it; `pruned_at` is the epoch).

    Raises:
        SeqtrainError: Bad device or run directory (nothing was written), or a file
            could not be written (`StorageError`, exit 1).
    """
    started_at = _now()
    check_files(config.data)  # before TensorFlow starts: a typo is told at once
    prepared = _prepare(config)
    overrides = list(overrides)
    # From here a signal only asks to stop: the run directory is set up whole
    # (summary.json last), then `_train` stops before training, resumably.
    with StopRequest() as stop:
        run = create_run_dir(run_stem(config.name, overrides), runs_dir=runs_dir,
                             exact=exact_dir)
        with RunLock(run):
            return run, _start(run, prepared, stop, started_at, command,
                               _overrides_text(command, overrides), display,
                               console or Console(stderr=True), report)


@dataclass(frozen=True)
class _Prepared:
    """What a new run needs before its folder is set up: tuning, devices, dataset."""

    config: ExperimentConfig
    resolved: tuning.Tuning
    devices: runtime.Devices
    in_force: tuning.Tuning
    dataset: Dataset


def _prepare(config: ExperimentConfig) -> _Prepared:
    """Start TensorFlow with the run's tuning, seed it, and build and check its data."""
    resolved = tuning.choose(config)
    devices, in_force = tuning.select(config, resolved)
    runtime.seed_everything(config.seed, config.runtime.deterministic)
    resources.check_data(config)
    dataset = build_dataset(config.data, config.seed, bool(config.model.embedding_dim))
    check_monitor(config, dataset)
    check_attention(config.model, dataset.spec, config.data)
    resources.check_model(config, dataset)
    return _Prepared(config, resolved, devices, in_force, dataset)


def _start(run: RunDir, prepared: _Prepared, stop: StopRequest, started_at: str, command: str,
           overrides_text: str, display: Display, console: Console,
           report=None) -> dict[str, Any]:
    """Set up a new run's folder, `summary.json` last, and train it from the start.

    Until `summary.json` exists, `resume` sets the run up again from its `config.yaml`
    (`resume_experiment`); once it exists the run can be resumed.
    """
    config, devices, dataset = prepared.config, prepared.devices, prepared.dataset
    atomic.write_text(run.config, dump_config(config))
    atomic.write_text(run.overrides, overrides_text)
    atomic.write_json(run.env, {**_environment(devices, started_at, command),
                                "data_files": fingerprints(config.data)})
    atomic.write_json(run.preprocessing, dataset.preprocessing)
    summary = _new_summary(config, run, started_at, dataset, devices.used, prepared.resolved,
                           prepared.in_force)
    atomic.write_json(run.summary, summary)
    return _train(_Session(config, devices, prepared.in_force, stop, run, dataset, summary,
                           display, console, report))


def _overrides_text(command: str, overrides: Iterable[str]) -> str:
    """What `overrides.txt` gets for one command: the command line, then each --set."""
    return f"# {command}\n" + "".join(f"{o}\n" for o in overrides)


def resume_experiment(
    path: Path,
    *,
    overrides: Iterable[str] = (),
    command: str = "",
    display: Display = "plain",
    console: Console | None = None,
    report=None,
) -> tuple[RunDir, dict[str, Any], bool]:
    """Continue an interrupted, killed or failed run, or extend a completed one.

    A run killed while it was set up (before its `summary.json`, nothing trained) is
    trained from the start, in its folder.

    Args:
        path: The run directory.
        overrides: Only `train.epochs=N` is allowed: everything else is fixed by the
            run's `config.yaml`, or the resumed run would not be the same experiment.
        command: The command line, recorded in `overrides.txt` and `env.json`.
        display: Progress display, as for `run_experiment`.
        console: Where progress goes.
        report: A search trial's `study.TrialReport`, as for `run_experiment`.

    Returns:
        The run directory, its summary (status as for `run_experiment`), and whether it
        trained: False when the run had completed its epochs already.

    Raises:
        RunDirError: Not a resumable run directory, a run being trained by another
            process, a diverged run, or overrides other than `train.epochs`.
    """
    run = open_run_dir(path)
    overrides = list(overrides)
    config = _resume_config(run, overrides)
    console = console or Console(stderr=True)
    made_by_run = run.lock.exists()  # `run` takes the lock before it writes config.yaml
    with StopRequest() as stop, RunLock(run):
        if made_by_run and not (run.summary.exists() or run.trained):
            _remove_temporaries(run)
            return run, _restart(run, config, stop, command, overrides, display, console,
                                 report), True
        summary = read_json(run.summary)
        if summary.get("stopped_early"):
            return run, summary, False
        if summary.get("status") == "diverged":
            raise RunDirError(
                f"run {run.path} diverged; resuming it would diverge again. Start a new run "
                "with a lower train.learning_rate or a train.clipnorm"
            )
        _remove_temporaries(run)
        started_at = _now()
        # As the run resolved it, not as this machine would: the same computation.
        chosen = tuning.recorded(summary)
        devices, in_force = tuning.select(config, tuning.choose(config, chosen))
        if "tuning" not in summary and chosen:  # a run from before it
            summary["tuning"] = chosen.settings()
        runtime.seed_everything(config.seed, config.runtime.deterministic)
        from seqtrain.state import describe, load_state

        state = load_state(run)
        _check_gradient_flow(run)
        done = state.epoch if state else 0  # whole epochs trained
        if config.train.epochs < done:
            raise RunDirError(f"run {run.path} has trained {done} epochs already; "
                              f"train.epochs={config.train.epochs} cannot undo them")
        if state and state.step == 0 and state.epoch >= config.train.epochs:
            return run, summary, False
        dataset = build_dataset(config.data, config.seed, bool(config.model.embedding_dim),
                                stored_preprocessing(run, config.data.task))

        atomic.write_text(run.config, dump_config(config))
        with open(run.overrides, encoding="utf-8") as file:
            recorded = file.read()
        atomic.write_text(run.overrides, recorded + _overrides_text(command, overrides))
        env = read_json(run.env)
        env.setdefault("resumes", []).append(_environment(devices, started_at, command))
        atomic.write_json(run.env, env)
        where = describe(state) if state else "the start"
        summary.update(status="running", error=None, signal=None, pruned_at=None,
                       epochs=config.train.epochs,
                       session_started_at=started_at, devices=devices.used,
                       config=config.model_dump(mode="json"))
        summary.setdefault("resumes", []).append({"at": started_at, "from": where})
        if display != "quiet":
            console.print(f"resuming {run.path} {where if state else 'from the start'}, of "
                          f"{config.train.epochs} epochs", markup=False, highlight=False,
                          soft_wrap=True)
        session = _Session(config, devices, in_force, stop, run, dataset, summary, display,
                           console, report)
        return run, _train(session, state), True


def _remove_temporaries(run: RunDir) -> None:
    """Delete what killed writers left in the run's folder and `checkpoints/`.

    Only while the run's lock is held: no training process can be writing then.
    """
    for folder in (run.path, run.checkpoints):
        if folder.is_dir():
            atomic.remove_temporaries(folder)


def _restart(run: RunDir, config: ExperimentConfig, stop: StopRequest, command: str,
             overrides: list[str], display: Display, console: Console,
             report=None) -> dict[str, Any]:
    """Train a run that was killed before its set-up ended, from the start, in its folder."""
    started_at = _now()
    prepared = _prepare(config)
    recorded = run.overrides.read_text(encoding="utf-8") if run.overrides.exists() else ""
    if display != "quiet":
        console.print(f"resuming {run.path} from the start (it stopped while being set up), "
                      f"of {config.train.epochs} epochs", markup=False, highlight=False,
                      soft_wrap=True)
    return _start(run, prepared, stop, started_at, command,
                  recorded + _overrides_text(command, overrides), display, console, report)


def check_monitor(config: ExperimentConfig, dataset: Dataset) -> None:
    """`train.monitor` must name a value the task's epochs log.

    Raises:
        ConfigError: It names another one.
    """
    allowed = monitors(dataset.spec.kind)
    if config.train.monitor not in allowed:
        raise ConfigError(getattr(config.data, "path", f"(task {config.data.task!r})"), [
            f"train.monitor: got {config.train.monitor!r}; the data of task "
            f"{config.data.task!r} is {dataset.spec.kind}, which logs {', '.join(allowed)}"])


def _resume_config(run: RunDir, overrides: list[str]) -> ExperimentConfig:
    """The run's config with `train.epochs` possibly changed; any other change is refused."""
    try:
        original = load_config(run.config)
        config = load_config(run.config, overrides)
    except ConfigError as err:
        raise RunDirError(f"{run.config} or --set: {err}") from None
    same_epochs = config.train.model_copy(update={"epochs": original.train.epochs})
    if config.model_copy(update={"train": same_epochs}) != original:
        raise RunDirError(
            f"resume takes only --set train.epochs=N; got {' '.join(overrides)}. The rest is "
            f"fixed by {run.config}: start a new run to change it"
        )
    return config


def _train(session: _Session, state=None) -> dict[str, Any]:
    """Build the model, restore `state` if any, fit, and record the outcome."""
    from seqtrain import callbacks as cb
    from seqtrain import pipeline
    from seqtrain.checkpoints import load_checkpoint
    from seqtrain.data.preprocessing import is_legacy
    from seqtrain.evaluate import evaluate_split
    from seqtrain.models import build_model, compile_model
    from seqtrain.state import build_metrics, restore

    config, run, dataset, summary = session.config, session.run, session.dataset, session.summary
    train, chosen, stop = config.train, session.tuning, session.stop
    tuning.prepare_process(chosen)
    with runtime.scope(config.distribution, session.devices):
        model = tuning.install(build_model(config.model, dataset.spec, name=config.name,
                                           precision=config.precision), chosen)
        compile_model(model, train, dataset.spec, dataset.train.num_batches(train.batch_size),
                      config.precision, legacy_metrics=is_legacy(dataset.preprocessing))
        if state is not None:
            if state.step:  # first: evaluating advances the dropout seeds, restored next
                build_metrics(model, dataset.val)
            restore(model, run, state)
    summary["num_params"] = model.count_params()
    summary["speed_settings"] = _speed_settings(config, chosen, session.devices, model)
    atomic.write_json(run.summary, summary)
    if state is None:
        from seqtrain.plan import gist, make_plan

        plan = make_plan(config, dataset, summary["devices"], summary["num_params"], chosen)
        atomic.write_json(run.path / "plan.json", plan)
        if session.display != "quiet":  # the folder first: a run killed later is found
            session.console.print(f"run directory: {run.path}\n{gist(plan)}", markup=False,
                                  highlight=False, soft_wrap=True)

    order = pipeline.EpochOrder(len(dataset.train), config.seed, train.shuffle)
    epoch_log = cb.EpochLog(run.metrics, cb.EpochLog.read(run.metrics, state.epoch if state else 0))
    epoch_log.write()  # drops rows of epochs the state does not cover: they are re-run
    probe = _gradient_flow(session, model, epoch_log, state)
    board = None
    if train.tensorboard:
        from seqtrain.tensorboard import TensorBoardLog

        board = TensorBoardLog(run.tensorboard, dump_config(config))
    monitor, mode = train.monitor, monitor_mode(train.monitor)
    best = cb.BestCheckpoint(run, monitor, mode, *(
        (state.best, state.best_epoch, state.best_logs) if state else ()))
    counters = state.callbacks if state else {}
    extra = []
    if train.early_stopping:
        extra.append(cb.EarlyStopping(
            monitor=monitor, mode=mode, patience=train.early_stopping.patience,
            min_delta=train.early_stopping.min_delta, state=counters.get("early_stopping")))
    if train.lr_schedule == "reduce_on_plateau":
        # min_delta 0: an improvement is what `best` counts as one, so the epoch that saves
        # best.keras never also cuts the rate (the state of that epoch copies best.keras).
        extra.append(cb.ReduceLROnPlateau(
            monitor=monitor, mode=mode, min_delta=0.0, factor=train.plateau_factor,
            patience=train.plateau_patience, min_lr=train.min_learning_rate,
            state=counters.get("reduce_on_plateau")))
    pruning = cb.ReportToStudy(session.report, train.epochs) if session.report else None
    wall_before = summary.get("wall_seconds") or 0.0

    def record_progress() -> None:  # at each saved state: `ls` sees epochs as they end
        _record_results(summary, epoch_log, best, resumable, "running", wall_before, probe)
        summary["ended_at"] = None
        atomic.write_json(run.summary, summary)

    resumable = cb.ResumableState(
        run, best, stop, train.epochs, train.checkpoint_every, train.backup_every_steps,
        step_offset=state.step if state else 0,
        metric_states=state.metric_states if state and state.step else None,
        train_seconds=state.train_seconds if state else 0.0, counters=extra,
        on_save=record_progress, stopping=pruning.stopping if pruning else None,
    )
    guard = cb.DivergenceGuard()
    progress = {"rich": cb.RichProgress, "plain": cb.PlainProgress}.get(session.display)
    progress = progress(session.console, train.epochs, dataset.train.num_batches(
        train.batch_size), state.step if state else 0,
        notes=probe.notes if probe else None) if progress else None
    callbacks = [order, *([probe] if probe else []), epoch_log, *([board] if board else []),
                 guard, best, *extra,
                 *([pruning] if pruning else []), resumable, *([progress] if progress else [])]
    validation = pipeline.evaluation_dataset(dataset.val, train.batch_size)
    warm = None
    if chosen.warm_validation:  # last: the first epoch's clock (`epoch_log`) starts before it
        from seqtrain.tuning.warm import WarmValidation

        warm = WarmValidation(pipeline.training_spec(dataset.train), validation)
        callbacks.append(warm)

    def fit(first_epoch: int, last_epoch: int, skip_batches: int = 0) -> None:
        order.epoch = first_epoch
        # shuffle=False: the order comes from `order`, per (seed, epoch)
        model.fit(pipeline.training_dataset(dataset.train, train.batch_size, order, skip_batches),
                  validation_data=validation, initial_epoch=first_epoch, epochs=last_epoch,
                  callbacks=callbacks, verbose=0, shuffle=False)

    status, signum = "completed", None
    try:
        if board is not None:
            board.start(epoch_log.rows)  # the same epochs as metrics.csv, each once
        if stop.requested:  # a signal while the run was set up: stop before training
            raise TrainingInterrupted(stop.signum)
        first = state.epoch if state else 0
        if state is not None and state.step:
            fit(first, first + 1, skip_batches=state.step)  # finish the stopped epoch
            first += 1
        pruned = pruning.stopping if pruning else lambda: False
        if (first < train.epochs and not guard.diverged_at and not _stopped_early(extra)
                and not pruned()):
            fit(first, train.epochs)
        status = "diverged" if guard.diverged_at else "pruned" if pruned() else "completed"
        if pruned():
            summary["pruned_at"] = pruning.pruned_at
        if _stopped_early(extra) and not pruned():  # resume trains a pruned run on
            summary["stopped_early"] = _stopped_early(extra)
    except TrainingInterrupted as interrupt:
        status, signum = "interrupted", interrupt.signum
    except KeyboardInterrupt:  # a second signal: stopped at once, last state intact
        status, signum = "interrupted", stop.second or signal.SIGINT
    except BaseException as err:
        _record_results(summary, epoch_log, best, resumable, "failed", wall_before, probe)
        summary["error"] = f"{type(err).__name__}: {err}"
        try:
            atomic.write_json(run.summary, summary)
        except StorageError:
            pass  # the disk that failed the run may not take the summary either
        raise
    finally:
        if warm is not None:
            warm.join()  # an error or interrupt can leave fit during the first epoch
        if isinstance(progress, cb.RichProgress):
            progress.close()  # also after an interrupt, which skips on_train_end
        if board is not None:
            board.close()
    if probe is not None and status != "interrupted":
        probe.conclude()
    _record_results(summary, epoch_log, best, resumable, status, wall_before, probe)
    summary["signal"] = {2: "SIGINT", 15: "SIGTERM"}.get(signum)
    if guard.diverged_at:
        summary["error"] = (
            f"loss became NaN or infinite in epoch {guard.diverged_at}; try a lower "
            f"train.learning_rate (now {train.learning_rate}) or set train.clipnorm "
            "(for example 1.0)"
        )
    atomic.write_json(run.summary, summary)  # complete before the test split is evaluated
    if epoch_log.rows:
        from seqtrain.plots import write_curves

        write_curves(run.path, epoch_log.rows, config.model_dump(mode="json"))
        if probe is not None and probe.plottable():
            from seqtrain.gradient_plots import write_gradient_flow

            write_gradient_flow(run.path, probe.flows, config.name)
    if status != "interrupted" and run.checkpoint("best").is_file():
        if (status == "completed" and config.distribution == "none" and epoch_log.rows
                and best.best_epoch == int(epoch_log.rows[-1]["epoch"])):
            # The last epoch is the best: best.keras holds these very weights, and this
            # model's test step is traced already (a load and a second trace are saved).
            best_model = model
        else:
            best_model = tuning.install(load_checkpoint(run.checkpoint("best")), chosen)
        summary["test"] = evaluate_split(best_model, dataset.test, train.batch_size)
        atomic.write_json(run.summary, summary)
    return summary


def _check_gradient_flow(run: RunDir) -> None:
    """A resumed run continues its `gradient_flow.csv`: refuse a damaged one up front.

    Raises:
        RunDirError: The file is damaged.
    """
    from seqtrain import gradient_flow

    try:
        gradient_flow.read_flow(run.path / gradient_flow.FILE)
    except ValueError as err:
        raise RunDirError(f"{err}; remove it to resume (the earlier epochs' gradient flow "
                          "is then lost)") from None


def _gradient_flow(session: _Session, model, epoch_log, state):
    """The gradient probe's callback (`train.gradient_flow: epoch`), or None."""
    config, dataset = session.config, session.dataset
    if config.train.gradient_flow == "off" or len(dataset.val) == 0:
        return None
    from seqtrain import gradient_flow
    from seqtrain.gradient_probe import GradientFlow, GradientProbe

    indices = gradient_flow.probe_indices(len(dataset.val), config.seed)
    baseline = dataset.baseline.metrics.get("loss") if dataset.baseline else None
    probe = GradientProbe(model, dataset.spec, dataset.val, indices)
    return GradientFlow(probe, session.run.path / gradient_flow.FILE,
                        state.epoch if state else 0, epoch_log.rows, baseline,
                        config.train.model_dump(mode="json"), config.model.cell,
                        check_vanishing=not (dataset.spec.per_step or config.model.bidirectional))


def _stopped_early(callbacks) -> int | None:
    """The 1-based epoch early stopping ended training at, if it did."""
    for callback in callbacks:
        if getattr(callback, "name", "") == "early_stopping" and callback.stopped_epoch:
            return callback.stopped_epoch + 1
    return None


def _new_summary(config: ExperimentConfig, run: RunDir, started_at: str, dataset: Dataset,
                 devices: list[str], resolved: tuning.Tuning,
                 in_force: tuning.Tuning) -> dict[str, Any]:
    """`summary.json` of a run that has just started: every key, results still empty."""
    spec, baseline = dataset.spec, dataset.baseline
    return {
        "status": "running",
        "name": config.name,
        "run_dir": str(run.path.resolve()),
        "started_at": started_at,
        "session_started_at": started_at,
        "ended_at": None,
        "epochs": config.train.epochs,
        "epochs_run": 0,
        "monitor": config.train.monitor,
        "mode": monitor_mode(config.train.monitor),
        "stopped_early": None,
        "pruned_at": None,
        "best_epoch": None,
        "best": {},
        "final": {},
        "test": {},
        "task": {"kind": spec.kind, "metric": spec.metric, "per_step": spec.per_step},
        # What a trivial predictor scores on the same test split: the bar to clear.
        "baseline": None if baseline is None else {"description": baseline.description,
                                                   **baseline.metrics},
        "num_params": None,
        "num_train_samples": len(dataset.train),
        "wall_seconds": 0.0,
        "train_seconds": None,
        "samples_per_second": None,
        "devices": devices,
        # The speed layer as resolved for the run's CPU, once: resume and eval reuse it.
        "tuning": resolved.settings(),
        # What this session used (the rest once the model is built: `_speed_settings`).
        "speed_settings": in_force.settings(),
        "resume_point": None,
        # The gradient probe's last figures and what it warned of (`gradient_flow.py`).
        "gradient_flow": None,
        "warnings": [],
        "signal": None,
        "error": None,
        # A copy of config.yaml for `seqtrain ls`, which then reads one JSON file per run.
        "config": config.model_dump(mode="json"),
    }


def _speed_settings(config: ExperimentConfig, chosen: tuning.Tuning,
                    devices: runtime.Devices, model) -> dict[str, Any]:
    """What sets the speed in this session, as used (Keras may turn jit_compile off).

    Recorded beside samples_per_second. Resume and eval reuse the run's `tuning` instead.
    """
    from seqtrain import pipeline

    train = config.train
    return {**chosen.settings(), "batch_size": train.batch_size,
            "steps_per_execution": train.steps_per_execution,
            "jit_compile": bool(model.jit_compile), "unroll": config.model.unroll,
            "precision": config.precision, "distribution": config.distribution,
            "threads": devices.threads,
            "input": f"tf.data, {pipeline.PREFETCH_BATCHES} batches prefetched, autotune off"}


def _record_results(summary: dict[str, Any], epoch_log, best, resumable, status: str,
                    wall_before: float, probe=None) -> None:
    """Fill the summary's results from what the callbacks recorded.

    `wall_before` is the wall time of the sessions before this one; `probe` the gradient
    probe's callback, if the run has one.
    """
    rows = epoch_log.rows

    def metrics(row: dict[str, float]) -> dict[str, float]:
        return {name: row[name] for name in ordered_metrics(row)}

    now = datetime.now(timezone.utc)
    session = (now - datetime.fromisoformat(summary["session_started_at"])).total_seconds()
    train_seconds = resumable.train_seconds
    state = resumable.last_state
    summary.update(
        status=status,
        ended_at=_now(),
        epochs_run=len(rows),
        best_epoch=best.best_epoch,
        best=metrics(best.best_logs) if best.best_logs else {},
        final=metrics(rows[-1]) if rows else {},
        wall_seconds=round(wall_before + session, 3),
        train_seconds=round(train_seconds, 3),
        samples_per_second=(
            round(summary["num_train_samples"] * len(rows) / train_seconds, 1) if rows else None
        ),
        resume_point={"epoch": state.epoch, "step": state.step} if state else
        summary.get("resume_point"),
    )
    if probe is not None:
        from seqtrain import gradient_flow

        last = rows[-1] if rows else {}
        summary["gradient_flow"] = {
            "probe": {"split": "val", "indices": probe.probe.indices.tolist(),
                      **probe.cost()},
            "epoch": int(last["epoch"]) if gradient_flow.RATIO in last else None,
            **{key: last[key] for key in gradient_flow.epoch_columns(last)},
        }
        summary["warnings"] = [warning.as_dict() for warning in probe.warnings]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _environment(devices: runtime.Devices, started_at: str, command: str) -> dict[str, Any]:
    """What `env.json` records: versions, devices, host, time and source commit."""
    return {
        "seqtrain": __version__,
        **runtime.versions(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "cpu_count": os.cpu_count(),
        "device_requested": devices.requested,
        "devices": devices.used,
        "device_details": [json.loads(json.dumps(d, default=str)) for d in devices.details],
        "threads": devices.threads,  # 0: TensorFlow's choice
        "started_at": started_at,
        "command": command,
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
