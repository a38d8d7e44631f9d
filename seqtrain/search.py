"""`seqtrain sweep --search`: an Optuna study of runs in one sweep folder, with pruning.

A search is a sweep whose trials an Optuna sampler (TPE or random) draws from a search
space instead of a grid. Each trial is still an ordinary `seqtrain run` in a child process
(`executors.py`), in a run directory named by its number and settings, recorded in
`sweep.jsonl`; its run reports the objective to the study every epoch and stops when the
pruner says so (status `pruned`, resumable). The study is Optuna's journal file in the
folder (`study.py`), so re-running the same command resumes it: finished trials are kept,
interrupted ones resumed, and new ones drawn until the study holds `--trials`. One
`seqtrain sweep` at a time drives a search folder (`search.lock`); `--jobs` or Ray run its
trials side by side. No TensorFlow in this process.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seqtrain import atomic, study
from seqtrain.config import load_config, monitor_mode, monitors
from seqtrain.data.registry import check_files
from seqtrain.errors import ConfigError, SeqtrainError
from seqtrain.listing import RunRecord, is_locked, read_run
from seqtrain.rundir import run_stem
from seqtrain.sweep import RESULTS, SIGNAL_POLL_SECONDS, append_line, check_same_sweep, trial_state

LOCK = "search.lock"
# A trial refused at start (exit 2: its sampled settings do not fit, say) fails alone; this
# many in a row stop the search, whose every trial would likely be refused too.
REFUSALS_IN_A_ROW = 3
BEST = "best.yaml"


@dataclass
class SearchPlan:
    """A validated search: where it lives, its space and settings, and its trial budget."""

    folder: Path
    config: Path
    sets: list[str]
    space: list[study.Param]
    settings: study.StudySettings
    trials: int
    seed: int
    monitor: str  # the config's train.monitor
    manifest: dict[str, Any]

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's `--set` list for its sampled values (the objective as train.monitor)."""
        objective = self.settings.objective
        return [*self.sets, *([f"train.monitor={objective}"] if objective != self.monitor
                              else []), *(p.override(params[p.key]) for p in self.space)]

    def stem(self, number: int, params: dict[str, Any]) -> str:
        """The trial's run directory name: `007.learning_rate=0.00312.units=48`."""
        return f"{number:03d}" + run_stem("", [p.label(params[p.key]) for p in self.space])

    def run_dir(self, number: int, params: dict[str, Any]) -> Path:
        return self.folder / self.stem(number, params)


def plan_search(config: Path, specs: list[str], sets: list[str], *, search: str, trials: int,
                objective: str | None, direction: str | None, prune: str, name: str | None,
                runs_dir: Path) -> SearchPlan:
    """Validate the search (every bound and choice in a trial's config) and find its folder.

    Writes nothing.

    Raises:
        SeqtrainError: A bad SPEC, sampler, pruner, direction, objective or budget; a
            bound or choice that a config refuses; or a folder that holds another sweep.
    """
    if search not in study.SAMPLERS:
        raise SeqtrainError(f"--search got {search!r}; expected tpe or random")
    if prune not in study.PRUNERS:
        raise SeqtrainError(f"--prune got {prune!r}; expected median or none")
    if direction not in (None, "min", "max"):
        raise SeqtrainError(f"--direction got {direction!r}; expected min or max")
    if trials < 1:
        raise SeqtrainError(f"--trials got {trials}; expected 1 or more")
    base = load_config(config, sets)  # the file's own problems first
    space = study.parse_space(specs)
    if not space:
        raise SeqtrainError("--search needs a search space: one or more --space KEY=SPEC, "
                            "such as --space train.learning_rate=float(1e-4,1e-2,log)")
    given = {s.partition("=")[0].strip(): s for s in sets}
    if objective and "train.monitor" in given and objective != base.train.monitor:
        raise SeqtrainError(f"--set {given['train.monitor']} and --objective {objective}: the "
                            "objective is each trial's train.monitor; give only --objective")
    objective = objective or base.train.monitor
    kind = base.data.task_kind()
    if objective not in monitors(kind):
        which = f"task {base.data.task!r} ({kind}) logs" if kind else "expected one of"
        raise SeqtrainError(f"--objective got {objective!r}; an epoch metric: {which} "
                            f"{', '.join(monitors(kind))}")
    if direction not in (None, monitor_mode(objective)):
        # best.keras, early stopping and the trial's value follow the objective's own sense.
        raise SeqtrainError(f"--direction {direction}: {objective} is "
                            f"{monitor_mode(objective)}imised, as best.keras and early "
                            "stopping use it; leave --direction out")
    for param in space:
        for key, text in given.items():  # the same setting, or one inside the other
            if param.key == key or param.key.startswith(key + ".") or key.startswith(
                    param.key + "."):
                raise SeqtrainError(f"--space {param.spec}: {param.key} is also set by --set "
                                    f"{text}; the search draws it: drop one of them")
        if param.key in ("name", "train.monitor"):
            raise SeqtrainError(f"--space {param.spec}: {param.key} is not a setting to search "
                                "(the objective is each trial's train.monitor)")
    problems = []
    for param in space:
        problems += _refusals(config, sets, objective, param)
    if problems:
        raise ConfigError(str(config), list(dict.fromkeys(problems)))
    text = Path(config).read_text(encoding="utf-8")
    manifest: dict[str, Any] = {
        "config": str(Path(config).resolve()),
        "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "search": search, "space": [p.spec for p in space], "sets": sets,
        "objective": objective, "direction": direction or monitor_mode(objective),
        "prune": prune,
        # Optuna's default of 5, fewer for a small study: a 4-trial study can prune too.
        "pruner_startup_trials": max(1, min(5, trials // 4)),
        "pruner_warmup_epochs": max(1, base.train.epochs // 4),
    }
    same = ("config_sha256", "search", "space", "sets", "objective", "direction", "prune")
    if name is None:
        digest = hashlib.sha256(json.dumps([manifest[k] for k in same]).encode()).hexdigest()
        name = f"{base.name}-search-{digest[:6]}"
    else:
        load_config(config, [*sets, f"name={json.dumps(name)}"])  # same rules as run names
    folder = runs_dir / name
    existing = folder / "sweep.json"
    if existing.exists():
        recorded = check_same_sweep(existing, manifest, same)
        # As the study began: a later, larger --trials must not change the pruner.
        for key in ("pruner_startup_trials", "pruner_warmup_epochs"):
            manifest[key] = recorded.get(key, manifest[key])
    settings = study.StudySettings.from_manifest(manifest)
    return SearchPlan(folder, Path(config).resolve(), sets, space, settings, trials, base.seed,
                      base.train.monitor, manifest)


def _refusals(config: Path, sets: list[str], objective: str, param: study.Param) -> list[str]:
    """What a trial's config says of `param`'s bounds or choices; empty if they are fine.

    For a float also a value between the bounds: a float range on a whole-number setting.
    """
    found = []
    for value in param.examples:
        try:
            check_files(load_config(config, [*sets, f"train.monitor={objective}",
                                             f"{param.key}={value}"]).data)
        except ConfigError as err:
            if param.kind == "float" and value not in param.examples[:2]:  # between
                if not found and any("whole number" in p for p in err.problems):
                    return [f"--space {param.spec}: {param.key} takes whole numbers; use "
                            f"int({int(param.low)},{int(param.high)})"]
            else:
                # Where it came from is the --space, not a --set the user never typed.
                found += [f"--space {param.spec}: " + p.replace(f" (--set {param.key}={value})",
                                                                "") for p in err.problems]
    return found


class FolderLock:
    """An exclusive `flock` on the search folder's `search.lock`: one driver per study."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SeqtrainError(f"{self.path.parent} is being searched by {holder}; one "
                                "`seqtrain sweep` drives a search at a time (run more trials "
                                "at once with --jobs, or on Ray)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


@dataclass(frozen=True)
class Job:
    """A trial to run or resume: its study number and sampled values."""

    number: int
    params: dict[str, Any]


class Search:
    """Draws trials from the study and runs them in child processes, `jobs` at a time."""

    def __init__(self, plan: SearchPlan, executor, say=print):
        self.plan, self.executor, self.say = plan, executor, say
        self.refused: str | None = None  # REFUSALS_IN_A_ROW trials refused: the search stops
        self._refusals = 0  # trials refused in a row
        self._lock = threading.Lock()
        self._backlog: list[Job] = []
        self._results: list[dict[str, Any]] = []
        self._study = None

    @property
    def stopping(self) -> int | None:
        """The signal that stopped the search, if one did."""
        return self.executor.stopping

    def run(self) -> list[dict[str, Any]]:
        """Resume the study's unfinished trials, then draw new ones up to the budget."""
        plan = self.plan
        plan.folder.mkdir(parents=True, exist_ok=True)
        (plan.folder / "logs").mkdir(exist_ok=True)
        with FolderLock(plan.folder):
            atomic.write_json(plan.folder / "sweep.json", plan.manifest)
            optuna = study.import_optuna()
            known = len(study.open_study(plan.folder, plan.settings).get_trials(deepcopy=False))
            # Seeded by the config's seed and the trials so far: a resumed study draws on.
            self._study = study.open_study(plan.folder, plan.settings,
                                           (plan.seed + known) % 2**32)
            if known >= plan.trials:
                self.say(f"the study holds {known} trials (--trials {plan.trials}): none is "
                         "drawn; a larger --trials draws more")
            running = self._study.get_trials(deepcopy=False,
                                             states=(optuna.trial.TrialState.RUNNING,))
            for trial in running:
                self._reconcile(trial)
            previous = {s: signal.signal(s, self._on_signal)
                        for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                workers = self.executor.capacity  # --jobs, or what a Ray cluster holds
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    pending = {pool.submit(self._work) for _ in range(workers)}
                    while pending:
                        # Timed waits: Python runs a signal handler only in this thread.
                        done, pending = wait(pending, timeout=SIGNAL_POLL_SECONDS,
                                             return_when=FIRST_COMPLETED)
                        for future in done:
                            future.result()
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
        return sorted(self._results, key=lambda r: r["number"])

    def _on_signal(self, signum, frame) -> None:
        self.executor.interrupt(signum)  # each trial saves and exits resumably

    def _reconcile(self, trial) -> None:
        """A trial the study still waits for, from an earlier sweep: tell it or queue it."""
        params = trial.params
        if set(params) != {p.key for p in self.plan.space}:  # drawn while the sweep died
            self._study.tell(trial.number, state=study.import_optuna().trial.TrialState.FAIL)
            return
        run_dir = self.plan.run_dir(trial.number, params)
        if (trial_state(run_dir) in ("completed", "pruned", "failed", "diverged")
                and not is_locked(run_dir / "run.lock")):
            self._finish(Job(trial.number, params), "skip", 0, time.monotonic())
        else:  # unfinished, or its process outlived the driver that started it (`_run` waits)
            self._backlog.append(Job(trial.number, params))

    def _next(self) -> Job | None:
        """The next trial to work on: an unfinished one, else a new draw within budget."""
        with self._lock:
            if self.stopping or self.refused:
                return None
            if self._backlog:
                return self._backlog.pop(0)
            if len(self._study.get_trials(deepcopy=False)) >= self.plan.trials:
                return None
            trial = self._study.ask({p.key: p.distribution() for p in self.plan.space})
            # For whoever loads the study with Optuna: where the trial's run lives.
            trial.set_user_attr("run_dir", str(self.plan.run_dir(trial.number, trial.params)))
            return Job(trial.number, dict(trial.params))

    def _work(self) -> None:
        try:
            while (job := self._next()) is not None:
                self._run(job)
        except BaseException:
            # A bug or a full disk here: draw nothing more, and stop the running trials
            # resumably, rather than train the rest of the budget before saying so.
            self.executor.interrupt(signal.SIGINT)
            raise

    def _run(self, job: Job) -> None:
        from seqtrain.sweep import _remove_abandoned

        plan = self.plan
        run_dir = plan.run_dir(job.number, job.params)
        stem = plan.stem(job.number, job.params)
        waited = is_locked(run_dir / "run.lock")
        if waited:
            self.say(f"{stem}: still training under an earlier sweep (killed?): waiting for it")
            while is_locked(run_dir / "run.lock") and not self.stopping:
                time.sleep(SIGNAL_POLL_SECONDS)
        state = trial_state(run_dir)
        action = {"new": "run", "abandoned": "run", "interrupted": "resume",
                  "killed": "resume"}.get(state, "skip")
        started = time.monotonic()
        if action == "run" and run_dir.exists() and not _remove_abandoned(run_dir):
            action = "skip"
        if waited and action == "skip":
            action = "waited"  # it ended under no driver's eye: say how
        exit_code = 0
        if action not in ("skip", "waited"):
            target = str(run_dir.resolve())
            if action == "run":
                args = ["run", str(plan.config), "--run-dir", target]
                args += [a for o in plan.overrides(job.params) for a in ("--set", o)]
            else:
                args = ["resume", target]
            args += ["--study", str(plan.folder.resolve()), "--trial", str(job.number)]
            self.say(f"{stem}: {'starting' if action == 'run' else 'resuming'}")
            exit_code = self.executor.execute(args, (plan.folder / "logs" / f"{stem}.log")
                                              .resolve())
        self._finish(job, action, exit_code, started)

    def _finish(self, job: Job, action: str, exit_code: int, started: float) -> None:
        """Tell the study how the trial's run ended (unless it was stopped); record it."""
        optuna = study.import_optuna()
        states = optuna.trial.TrialState
        plan = self.plan
        run_dir = plan.run_dir(job.number, job.params)
        stem = plan.stem(job.number, job.params)
        record = read_run(run_dir) if run_dir.exists() else RunRecord(run_dir)
        status = record.status if run_dir.exists() else "not started"
        value = (record.summary.get("best") or {}).get(plan.settings.objective)
        error = None
        if exit_code == 2 and not run_dir.exists():
            status = "refused"  # its config, data or size refused before it began
            log = plan.folder / "logs" / f"{stem}.log"
            lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
            error = lines[-1].removeprefix("error: ") if lines else f"see {log}"
        with self._lock:
            self._refusals = self._refusals + 1 if status == "refused" else 0
            if self._refusals >= REFUSALS_IN_A_ROW:
                self.refused = self.refused or error
        if status == "completed" and value is None:  # NaN at every epoch, say
            status, error = "failed", f"no finite {plan.settings.objective} at any epoch"
        outcome = {"completed": states.COMPLETE, "pruned": states.PRUNED,
                   "failed": states.FAIL, "diverged": states.FAIL,
                   "refused": states.FAIL}.get(status)
        if self.stopping and status not in ("completed", "pruned", "failed", "diverged"):
            outcome, status = None, "interrupted"  # the re-run resumes it
        with self._lock:
            if outcome is not None and self._study.trials[job.number].state == states.RUNNING:
                self._study.tell(job.number, value if outcome == states.COMPLETE else None,
                                 state=outcome)
        result = {
            "trial": stem, "index": job.number, "number": job.number,
            "params": job.params, "overrides": plan.overrides(job.params)[len(plan.sets):],
            "run_dir": str(run_dir), "action": action, "status": status, "error": error,
            "exit_code": exit_code, "kind": record.kind,
            "objective": plan.settings.objective, "value": value,
            "epochs_run": record.summary.get("epochs_run"),
            **{column: record.get(column) for column in RESULTS},
            "seconds": round(time.monotonic() - started, 2), "executor": self.executor.name,
            "ended_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        append_line(plan.folder / "sweep.jsonl", result)
        with self._lock:
            self._results.append(result)
        if action != "skip" or status != "completed":
            shown = f"  {plan.settings.objective} {value:.4g}" if value is not None else ""
            trials = self._study.get_trials(deepcopy=False)
            finished = sum(t.state.is_finished() for t in trials)
            self.say(f"[{finished}/{max(plan.trials, len(trials))}] {stem}: {status}"
                     + (f" (exit {exit_code})" if exit_code else "") + shown
                     + (f": {error}" if error else ""))


def trial_rows(plan: SearchPlan) -> list[dict[str, Any]]:
    """One row per trial of the study, in order: its settings, status, value and results."""
    states = study.import_optuna().trial.TrialState
    found = study.open_study(plan.folder, plan.settings).get_trials(deepcopy=False)
    rows = []
    for trial in found:
        complete = set(trial.params) == {p.key for p in plan.space}
        run_dir = plan.run_dir(trial.number, trial.params) if complete else None
        record = read_run(run_dir) if run_dir and run_dir.exists() else None
        rows.append({
            "number": trial.number,
            "trial": run_dir.name if run_dir else f"{trial.number:03d}",
            "run_dir": str(run_dir) if run_dir else None,
            "state": trial.state.name.lower(),
            "status": _status(trial, record, complete),
            # A pruned trial's: its objective at the epoch it stopped.
            "value": trial.value if trial.state in (states.COMPLETE, states.PRUNED) else
            (record.summary.get("best") or {}).get(plan.settings.objective)
            if record and trial.state == states.RUNNING else None,  # its best so far
            "params": dict(trial.params),
            "epochs_run": record.summary.get("epochs_run") if record else None,
            "kind": record.kind if record else None,
            **{column: record.get(column) if record else None for column in RESULTS},
        })
    return rows


def _status(trial, record: RunRecord | None, complete: bool) -> str:
    """A trial's status for the table: its run's, as the study sees it where they differ."""
    states = study.import_optuna().trial.TrialState
    if record is None:
        if not complete:
            return "failed"  # drawn while its driver died
        return "not started" if trial.state == states.RUNNING else "refused"
    if trial.state == states.PRUNED and record.status != "pruned":
        return f"pruned, then {record.status}"  # `seqtrain resume` trained it on
    if trial.state == states.FAIL and record.status == "completed":
        return "failed: no finite objective"
    return record.status


def best_trial(plan: SearchPlan) -> dict[str, Any] | None:
    """The best completed trial: its value, `--set` list and `best.yaml`, written here.

    `best.yaml` is the trial's own config, ready for `seqtrain run`; None before any
    trial completed.
    """
    found = study.open_study(plan.folder, plan.settings)
    try:
        trial = found.best_trial
    except ValueError:
        return None
    run_dir = plan.run_dir(trial.number, trial.params)
    sets = plan.overrides(trial.params)
    best = {"number": trial.number, "trial": run_dir.name, "run_dir": str(run_dir),
            "objective": plan.settings.objective, "value": trial.value,
            "params": dict(trial.params), "sets": sets, "config": None}
    source = run_dir / "config.yaml"
    if source.is_file():
        header = (f"# The best trial of the search {plan.folder.name}: {run_dir.name}, "
                  f"{plan.settings.objective} {trial.value:.6g}.\n"
                  f"# seqtrain run {plan.folder / BEST}\n")
        atomic.write_text(plan.folder / BEST, header + source.read_text(encoding="utf-8"))
        best["config"] = str(plan.folder / BEST)
    return best


def importances(plan: SearchPlan) -> dict[str, float] | str:
    """Each setting's importance (Optuna's PED-ANOVA), or why not.

    PED-ANOVA needs nothing beyond Optuna (its fANOVA needs scikit-learn); named here so
    that every Optuna version computes the same.
    """
    optuna = study.import_optuna()
    found = study.open_study(plan.folder, plan.settings)
    complete = found.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return f"needs 2 completed trials, the study has {len(complete)}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            found = optuna.importance.get_param_importances(found, evaluator=evaluator)
        return {k: round(float(v), 4) for k, v in found.items()}
    except (ImportError, ValueError, RuntimeError, ZeroDivisionError) as err:
        return str(err) or type(err).__name__


def report(plan: SearchPlan) -> dict[str, Any]:
    """The study as it stands: every trial, the best one and the settings' importances."""
    return {"folder": str(plan.folder), "search": plan.settings.search,
            "space": [p.spec for p in plan.space], "objective": plan.settings.objective,
            "direction": plan.settings.direction, "prune": plan.settings.prune,
            "budget": plan.trials,
            "trials": trial_rows(plan), "best": best_trial(plan),
            "importances": importances(plan)}


def search_table(rows: list[dict[str, Any]], objective: str, columns: list[str]):
    """The trials: status, epochs run, objective (best epoch) and the chosen results."""
    from rich.table import Table

    table = Table(title=f"search trials ({objective}: the best epoch's, or a pruned trial's "
                  "last)", title_justify="left")
    for name in ("trial", "status", "epochs", objective, *columns):
        table.add_column(name, justify="left" if name in ("trial", "status") else "right")
    for row in rows:
        value = row["value"] if row["value"] is not None else None
        cells = ["-" if row.get(c) is None else f"{row[c]:.4g}" for c in columns]
        status = row["status"]
        table.add_row(row["trial"], status if status == "completed" else f"[yellow]{status}",
                      "-" if row["epochs_run"] is None else str(row["epochs_run"]),
                      "-" if value is None else f"{value:.4g}", *cells)
    return table


def describe(result: dict[str, Any]) -> list[str]:
    """Lines for stderr: the best trial, its settings, `best.yaml`, the importances."""
    best = result["best"]
    if best is None:
        return ["no trial has completed yet: no best trial"]
    lines = [f"best trial: {best['trial']} ({best['objective']} {best['value']:.6g})",
             "  --set " + " --set ".join(best["sets"])]
    if best["config"]:
        lines.append(f"  as a config: seqtrain run {best['config']}")
    found = result["importances"]
    if isinstance(found, dict):
        completed = sum(row["state"] == "complete" for row in result["trials"])
        lines.append(f"importances (PED-ANOVA over {completed} completed trials; few trials, "
                     "rough shares): " if completed < 10 else
                     f"importances (PED-ANOVA over {completed} completed trials): ")
        lines[-1] += ", ".join(f"{k} {v:.2f}" for k, v in found.items())
    else:
        lines.append(f"importances: not computed ({found})")
    return lines
