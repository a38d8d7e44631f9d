"""`seqtrain sweep`: a grid of runs (times seeds) in one folder, resumable and shardable.

Each trial is an ordinary `seqtrain run` (or `seqtrain resume`) in a child process (here,
or in a Ray task: `executors.py`), in a run directory named after its overrides, so
re-running the same command finds the finished trials and skips them, resumes interrupted
ones, and retries failed ones only when asked. `--shard I/N` takes every N-th trial from
the I-th, so N jobs on N machines can share one folder. No TensorFlow in this process
(except `--dry-run --measure`, which times each distinct trial: `estimate`).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import math
import os
import shutil
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seqtrain import atomic
from seqtrain.config import load_config
from seqtrain.data.registry import check_files
from seqtrain.errors import ConfigError, RunDirError, SeqtrainError
from seqtrain.listing import (
    COLUMNS,
    RunRecord,
    check_columns,
    is_locked,
    kind_columns,
    read_run,
)
from seqtrain.rundir import RunDir, RunLock, run_stem

SIGNAL_POLL_SECONDS = 0.2  # the longest a Ctrl-C waits for the sweep to act on it


@dataclass(frozen=True)
class Trial:
    """One point of the grid, with one seed."""

    index: int
    overrides: tuple[str, ...]  # the grid's assignments, then `seed=N` when seeds > 1

    @property
    def stem(self) -> str:
        """The trial's run directory name: its overrides, e.g. `cell=gru.units=64.seed=43`."""
        return run_stem("", list(self.overrides)).lstrip(".") or "base"

    @property
    def group(self) -> tuple[str, ...]:
        """The overrides without the seed: trials that differ only by seed share it."""
        return tuple(o for o in self.overrides if not o.startswith("seed="))


def parse_grid(grids: list[str]) -> list[tuple[str, list[str]]]:
    """`model.cell=simple_rnn,lstm,gru` -> ("model.cell", ["simple_rnn", "lstm", "gru"]).

    Raises:
        SeqtrainError: A grid lacks `=`, has no values, or names a key twice.
    """
    parsed: list[tuple[str, list[str]]] = []
    for text in grids:
        key, sep, values = text.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not choices:
            raise SeqtrainError(f"--grid {text!r}: expected key.path=v1,v2,..., for example "
                                "model.cell=lstm,gru")
        if key.strip() in (k for k, _ in parsed):
            raise SeqtrainError(f"--grid names {key.strip()} twice; give all its values in one")
        parsed.append((key.strip(), choices))
    return parsed


def expand(grid: list[tuple[str, list[str]]], seeds: int, base_seed: int) -> list[Trial]:
    """The cartesian product of the grid, times `seeds` seeds (base_seed, base_seed + 1, ...)."""
    keys = [key for key, _ in grid]
    trials = []
    for values in itertools.product(*(choices for _, choices in grid)):
        for offset in range(seeds):
            overrides = [f"{k}={v}" for k, v in zip(keys, values, strict=True)]
            if seeds > 1:
                overrides.append(f"seed={base_seed + offset}")
            trials.append(Trial(len(trials), tuple(overrides)))
    return trials


def parse_shard(spec: str | None) -> tuple[int, int]:
    """`I/N` (1-based) as (I, N); None means the whole grid, (1, 1).

    Raises:
        SeqtrainError: Not of the form I/N with 1 <= I <= N.
    """
    if spec is None:
        return 1, 1
    index, sep, count = spec.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise SeqtrainError(f"--shard {spec!r}: expected I/N with 1 <= I <= N, such as 2/4 "
                            "(for a SLURM array: --shard $((SLURM_ARRAY_TASK_ID+1))/$N)")
    return int(index), int(count)


def shard(trials: list[Trial], index: int, count: int) -> list[Trial]:
    """Every `count`-th trial starting from the `index`-th: shards are disjoint and cover all."""
    return [t for t in trials if t.index % count == index - 1]


@dataclass
class SweepPlan:
    """A validated sweep: where it lives, its trials, and how to run one."""

    folder: Path
    config: Path
    sets: list[str]
    trials: list[Trial]
    manifest: dict[str, Any]

    def run_dir(self, trial: Trial) -> Path:
        return self.folder / trial.stem


def plan_sweep(config: Path, grids: list[str], sets: list[str], seeds: int,
               name: str | None, runs_dir: Path) -> SweepPlan:
    """Validate every trial's config and work out the sweep folder; writes nothing.

    Raises:
        SeqtrainError: A bad grid, a trial whose config does not validate, or a folder
            that holds a different sweep.
    """
    if seeds < 1:
        raise SeqtrainError(f"--seeds got {seeds}; expected 1 or more")
    base = load_config(config, sets)  # reports the file's own problems first
    grid = parse_grid(grids)
    trials = expand(grid, seeds, base.seed)
    problems = []
    for trial in trials:
        try:
            # Its data files too: before a trial starts TensorFlow only to find one missing.
            check_files(load_config(config, [*sets, *trial.overrides]).data)
        except ConfigError as err:
            problems += [f"trial {trial.stem}: {p}" for p in err.problems]
    if problems:
        raise ConfigError(str(config), sorted(set(problems)))
    text = Path(config).read_text(encoding="utf-8")
    manifest = {"config": str(Path(config).resolve()),
                "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
                "grid": [[k, v] for k, v in grid], "sets": sets, "seeds": seeds}
    if name is None:
        digest = hashlib.sha256(json.dumps([manifest["config_sha256"], manifest["grid"], sets,
                                            seeds]).encode()).hexdigest()[:6]
        name = f"{base.name}-sweep-{digest}"
    else:
        load_config(config, [*sets, f"name={json.dumps(name)}"])  # same rules as run names
    folder = runs_dir / name
    existing = folder / "sweep.json"
    if existing.exists():
        check_same_sweep(existing, manifest, ("config_sha256", "grid", "sets", "seeds"))
    return SweepPlan(folder, Path(config).resolve(), sets, trials, manifest)


def check_same_sweep(existing: Path, manifest: dict[str, Any], keys: tuple[str, ...]) -> dict:
    """The recorded `sweep.json`, if it defines the same sweep as `manifest` on `keys`.

    Raises:
        SeqtrainError: It does not; the message names each setting that differs.
    """
    recorded = json.loads(existing.read_text(encoding="utf-8"))
    differ = [k for k in keys if recorded.get(k) != manifest[k]]
    if differ:
        what = "; ".join("the config file changed since" if k == "config_sha256" else
                         f"{k}: {json.dumps(recorded.get(k))} there, {json.dumps(manifest[k])} "
                         "now" for k in differ)
        raise SeqtrainError(f"{existing.parent} holds a different sweep ({what}); re-run it "
                            "with its own settings, or pick another --name")
    return recorded


def trial_state(run_dir: Path) -> str:
    """`new`, `abandoned`, or the run's status as `seqtrain ls` reads it.

    `abandoned`: a folder its run was killed in before it wrote its config, which nobody
    holds (`killed` for a run that got further).
    """
    if not run_dir.exists():
        return "new"
    if not (run_dir / "config.yaml").exists() and not is_locked(run_dir / "run.lock"):
        return "abandoned"
    return read_run(run_dir).status


def trial_action(plan: SweepPlan, trial: Trial, retry_failed: bool) -> str:
    """What running the trial now means: `run`, `resume` or `skip`, from its run directory."""
    state = trial_state(plan.run_dir(trial))
    if state in ("new", "abandoned"):
        return "run"
    if state == "completed":
        return "skip"
    if state in ("interrupted", "killed"):
        return "resume"
    if state == "failed":
        return "resume" if retry_failed else "skip"
    return "skip"  # diverged (it would again), running elsewhere, broken


class Sweep:
    """Runs a plan's trials in child processes and records each in `sweep.jsonl`."""

    def __init__(self, plan: SweepPlan, executor, retry_failed: bool, shard_spec: str,
                 say=print):
        # `say`: progress (a line as each trial starts and ends); `lambda _: None` for none.
        self.plan, self.executor, self.retry_failed = plan, executor, retry_failed
        self.shard_spec, self.say = shard_spec, say

    @property
    def stopping(self) -> int | None:
        """The signal that stopped the sweep, if one did."""
        return self.executor.stopping

    def action(self, trial: Trial) -> str:
        """What running the trial now means: run, resume, skip or retry."""
        return trial_action(self.plan, trial, self.retry_failed)

    def run(self, trials: list[Trial]) -> list[dict[str, Any]]:
        """Run `trials` (`jobs` at a time); return one result per trial."""
        self.plan.folder.mkdir(parents=True, exist_ok=True)
        (self.plan.folder / "logs").mkdir(exist_ok=True)
        atomic.write_json(self.plan.folder / "sweep.json", self.plan.manifest)
        results: list[dict[str, Any]] = []
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with ThreadPoolExecutor(max_workers=self.executor.workers) as pool:
                pending = {pool.submit(self._run_trial, t) for t in trials}
                while pending:
                    # Waits that time out: the kernel may hand a Ctrl-C to a worker thread,
                    # and Python runs the handler only when this (main) thread wakes.
                    finished, pending = wait(pending, timeout=SIGNAL_POLL_SECONDS,
                                             return_when=FIRST_COMPLETED)
                    for future in finished:
                        result = future.result()
                        results.append(result)
                        self.say(f"[{len(results)}/{len(trials)}] {result['trial']}: "
                                 f"{result['status']}"
                                 + (f" (exit {result['exit_code']})" if result["exit_code"]
                                    else "") + _brief(result))
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return sorted(results, key=lambda r: r["index"])

    def _on_signal(self, signum, frame) -> None:
        # Trials run in their own sessions (a terminal's Ctrl-C reaches only this
        # process), so each gets exactly one signal: saved, resumable, exit 130/143.
        self.executor.interrupt(signum)

    def _run_trial(self, trial: Trial) -> dict[str, Any]:
        run_dir = self.plan.run_dir(trial)
        action = "not started" if self.stopping else self.action(trial)
        started = time.monotonic()
        exit_code = 0
        if action in ("run", "resume"):
            # Absolute paths: a Ray task starts in a folder of its own, maybe on another node.
            target = str(run_dir.resolve())
            if action == "run" and run_dir.exists() and not _remove_abandoned(run_dir):
                action = "skip"  # another process has taken it over since
            if action == "run":
                args = ["run", str(self.plan.config), "--run-dir", target]
                args += [a for o in [*self.plan.sets, *trial.overrides] for a in ("--set", o)]
            else:
                args = ["resume", target]
            log = (self.plan.folder / "logs" / f"{trial.stem}.log").resolve()
            self.say(f"{trial.stem}: {'starting' if action == 'run' else 'resuming'}")
            exit_code = self.executor.execute(args, log)
        record = read_run(run_dir) if run_dir.exists() else RunRecord(run_dir)
        status = record.status if run_dir.exists() else action
        if self.stopping and action in ("run", "resume") and status not in FINISHED:
            # Stopped with the sweep, maybe before its run wrote a thing: the sweep's
            # re-run resumes it (or starts it over), as it does an interrupted run.
            status = "interrupted"
        result = {
            "trial": trial.stem,
            "index": trial.index,
            "overrides": list(trial.overrides),
            "seed": next((int(o.split("=")[1]) for o in trial.overrides
                          if o.startswith("seed=")), None),
            "run_dir": str(run_dir),
            "action": action,
            "status": status,
            "exit_code": exit_code,
            "kind": record.kind,
            **{column: record.get(column) for column in RESULTS},
            "seconds": round(time.monotonic() - started, 2),
            "shard": self.shard_spec,
            "executor": self.executor.name,
            "ended_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        append_line(self.plan.folder / "sweep.jsonl", result)
        return result


def _remove_abandoned(run_dir: Path) -> bool:
    """Delete a trial's folder that its run left before writing its config; False if in use.

    Under the folder's own lock, which a live run holds from its first moments.
    """
    try:
        with RunLock(RunDir(run_dir)):
            if (run_dir / "config.yaml").exists():
                return False
            shutil.rmtree(run_dir)
    except (RunDirError, OSError):
        return False
    return True


def _brief(result: dict[str, Any]) -> str:
    """The best epoch's validation loss, and accuracy or mae by the kind of task."""
    loss = result.get("best_val_loss")
    if loss is None:
        return ""
    metric = "val_mae" if result.get("kind") == "regression" else "val_accuracy"
    value = result.get(f"best_{metric}")
    return f"  best val_loss {loss:.4f}" + (f"  {metric} {value:.4f}" if value is not None
                                            else "")


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line, whole: one write under an exclusive lock, then fsync.

    Trials finishing at once, in threads or in other shards' processes, never interleave.
    """
    data = (json.dumps(atomic.finite(record)) + "\n").encode()
    with atomic.storage_errors(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock


FINISHED = ("completed", "failed", "diverged")  # what a stopped sweep leaves as it was

# The results of a trial (`seqtrain ls` columns) that `sweep.jsonl` records and the
# comparison table can show; regression's in the target's units.
RESULTS = tuple(c for c in COLUMNS if c.startswith(("best_val_", "test_")))
COMPARED = (*RESULTS, "best_epoch", "wall_seconds", "samples_per_second")


def parse_columns(text: str) -> list[str]:
    """`sweep --columns best_val_loss,test_mae` as a list of COMPARED names.

    Raises:
        SeqtrainError: No names, or one the table cannot show.
    """
    return check_columns(text, COMPARED, "best_val_loss,test_mae")


def compare(plan: SweepPlan) -> list[dict[str, Any]]:
    """One row per grid point: mean and standard deviation across seeds.

    Reads every trial in the folder, whichever shard ran it. A trial that stopped early
    (interrupted, killed, failed) counts with the results it recorded so far, its best so
    far: `runs` counts the trials with results, `completed` those that finished, and
    `status` says how the grid point's trials stand (`completed`, `1 interrupted`...).
    """
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    for trial in plan.trials:
        run_dir = plan.run_dir(trial)
        groups.setdefault(trial.group, []).append(
            read_run(run_dir) if run_dir.exists() else RunRecord(run_dir, problem="not run"))
    rows = []
    for group, records in groups.items():
        statuses = ["not run" if r.problem == "not run" else r.status for r in records]
        results = [r for r in records if r.get("best_val_loss") is not None]
        row: dict[str, Any] = {"trial": " ".join(group) or "(base config)",
                               "status": _status(statuses), "trials": len(records),
                               "completed": statuses.count("completed"), "runs": len(results),
                               "kinds": sorted({r.kind for r in records if r.kind})}
        for column in COMPARED:
            values = [r.get(column) for r in results if r.get(column) is not None]
            row[column] = _mean(values)
            row[f"{column}_std"] = _std(values)
        rows.append(row)
    return rows


def _status(statuses: list[str]) -> str:
    """`completed` when all are; otherwise each status with its count (`1 interrupted`)."""
    if len(set(statuses)) == 1 and (len(statuses) == 1 or statuses[0] == "completed"):
        return statuses[0]
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return ", ".join(f"{count} {status}" for status, count in counts.items())


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The table's default columns: best_val_loss and the results of the trials' kinds."""
    return ["best_val_loss", *kind_columns(kind for row in rows for kind in row["kinds"])]


def comparison_table(rows: list[dict[str, Any]], columns: list[str] | None = None):
    """The sweep's results: `columns`, by default those of the trials' kind of task.

    `runs` is the trials each mean is over (those with results; a trial that stopped
    early gives its best so far), `status` whether they all completed.
    """
    from rich.table import Table

    columns = columns or table_columns(rows)
    table = Table(title="sweep results (mean ± std across seeds; best so far of a trial "
                  "not completed)", title_justify="left")
    table.add_column("trial")
    table.add_column("status")
    table.add_column("runs", justify="right")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        cells = []
        for column in columns:
            mean, std = row[column], row[f"{column}_std"]
            cells.append("-" if mean is None else f"{mean:.4g}" + (f" ± {std:.2g}" if std
                                                                   is not None else ""))
        status = row.get("status", "completed")
        table.add_row(row["trial"], status if status == "completed" else f"[yellow]{status}",
                      str(row["runs"]), *cells)
    return table


def estimate(plan: SweepPlan, trials: list[Trial], actions: list[str],
             jobs: int) -> dict[str, Any]:
    """Estimated seconds of each trial and of the sweep, from real steps timed here.

    Each distinct config (trials that differ only by seed share one) is built and timed
    for a few steps (`seqtrain plan --measure`), plus the start-up of a trial's process
    (importing TensorFlow, measured once). Trials to skip cost nothing; trials to resume
    are counted whole, an upper bound. The wall time schedules the trials on `jobs`
    workers, longest first, as if they did not slow each other down.

    Raises:
        SeqtrainError: A trial's device or data cannot be used.
    """
    from seqtrain import runtime
    from seqtrain.plan import plan_experiment

    device = load_config(plan.config, plan.sets).device
    startup = runtime.start_tensorflow(device)  # each trial's process pays this too

    measured: dict[tuple[str, ...], float] = {}
    seconds = []
    for trial, action in zip(trials, actions, strict=True):
        if action not in ("run", "resume"):
            seconds.append(0.0)
            continue
        if trial.group not in measured:
            config = load_config(plan.config, [*plan.sets, *trial.overrides])
            measured[trial.group] = plan_experiment(config, True)["measured"]["run_seconds"]
        seconds.append(startup + measured[trial.group])
    workers = [0.0] * max(1, min(jobs, len(trials)))
    for cost in sorted(seconds, reverse=True):
        workers[workers.index(min(workers))] += cost
    return {"trial_seconds": seconds, "startup_seconds": startup,
            "total_seconds": sum(seconds), "wall_seconds": max(workers), "jobs": jobs}
