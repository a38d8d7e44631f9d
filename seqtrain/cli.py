"""The `seqtrain` command: parses, delegates to the library, maps errors to exit codes.

No TensorFlow at import time: `--help` and `validate` must answer instantly. Results go
to stdout (a path, YAML, or JSON with `--json`); progress, tables and errors to stderr.

Exit codes: 0 success; 1 training failed (diverged, a file could not be written, or a
bug: traceback shown); 2 usage, config or input error; 130 interrupted by SIGINT, 143 by
SIGTERM.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from seqtrain import __version__, completion
from seqtrain.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_TRAINING_FAILED,
    SeqtrainError,
)
from seqtrain.helpformat import Command, Group

app = typer.Typer(
    name="seqtrain",
    help="Train recurrent networks (SimpleRNN, LSTM, GRU) from YAML experiment files.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    cls=Group,
    # Said, not left to Typer's default: 0.16 then leaves help text unparsed and 0.29 parses
    # it, so a literal `[` (`seqtrain\\[ray]`, `\\[default: runs]`) is escaped for both.
    rich_markup_mode="rich",
)

EXIT_CODES = {"completed": 0, "pruned": 0, "diverged": EXIT_TRAINING_FAILED,
              "failed": EXIT_TRAINING_FAILED, "interrupted": EXIT_INTERRUPTED}


class _Stderr(Console):
    """stderr, where a reader that went away (`2>&1 | head`) silences the progress.

    Rich's own answer to a broken pipe is to exit, which would stop a training run.
    """

    def __init__(self):
        super().__init__(stderr=True)

    def on_broken_pipe(self) -> None:
        self.quiet = True


def _stderr() -> Console:
    # Created per call so that test runners that swap sys.stderr see the output.
    return _Stderr()


def _say(message: str, style: str) -> None:
    """One message on stderr, never re-wrapped: it may be a path someone copies."""
    _stderr().print(message, markup=False, highlight=False, soft_wrap=True, style=style)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Print expected failures as one short message and exit with their code."""
    try:
        yield
    except SeqtrainError as err:
        _say(f"error: {err}", "red")
        raise typer.Exit(code=err.exit_code) from None
    except KeyboardInterrupt:
        # Outside model.fit (which records it in summary.json): while TensorFlow starts,
        # or while the test split is evaluated. Click would say "Aborted!" and exit 1.
        _say("interrupted", "yellow")
        raise typer.Exit(code=EXIT_INTERRUPTED) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seqtrain {__version__}")
        raise typer.Exit()


# Shared argument types, so that every command spells an option the same way.
ConfigArg = Annotated[Path, typer.Argument(help="Experiment YAML file.", show_default=False,
                                           metavar="CONFIG",
                                           autocompletion=completion.config_files)]
RunDirArg = Annotated[Path, typer.Argument(help="A run directory made by `seqtrain run`.",
                                           show_default=False, metavar="RUN_DIR",
                                           autocompletion=completion.run_dirs)]
SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a config value: key.path=value (a YAML scalar). Repeatable.",
    show_default=False, metavar="KEY=VALUE", autocompletion=completion.set_keys)]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Nothing on stderr but errors.")]
JsonSummaryOption = Annotated[bool, typer.Option(
    "--json", help="Print summary.json on stdout instead of the run directory's path.")]
# How `seqtrain sweep --search` tells a trial's run which study trial it is (not for users).
StudyOption = Annotated[Optional[Path], typer.Option("--study", hidden=True)]
TrialOption = Annotated[Optional[int], typer.Option("--trial", hidden=True)]


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Train recurrent networks (SimpleRNN, LSTM, GRU) from YAML experiment files."""


@app.command(cls=Command)
def run(
    config: ConfigArg,
    set_: SetOption = None,
    runs_dir: Annotated[Optional[Path], typer.Option(
        "--runs-dir", help="Parent folder of the new run directory.  \\[default: runs]",
        show_default=False)] = None,
    run_dir: Annotated[Optional[Path], typer.Option(
        "--run-dir", help="Exact path of the new run directory; must not exist.",
        show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="Experiment name (the config's `name`), used in the run directory's "
        "name.", show_default=False)] = None,
    json_: JsonSummaryOption = False,
    quiet: QuietOption = False,
    study: StudyOption = None,
    trial: TrialOption = None,
) -> None:
    """Train CONFIG into a new run directory and print its path."""
    with _user_errors():
        if runs_dir is not None and run_dir is not None:
            raise SeqtrainError("--runs-dir and --run-dir exclude each other: --run-dir is the "
                                "exact path of the run directory, --runs-dir only its parent")
        from seqtrain.config import load_config

        # --name is `--set name=...` with the value kept a string, whatever it looks like.
        overrides = (set_ or []) + ([f"name={json.dumps(name)}"] if name is not None else [])
        experiment = load_config(config, overrides)
        from seqtrain.experiment import run_experiment

        console = _stderr()
        finished, summary = run_experiment(
            experiment, runs_dir=runs_dir, exact_dir=run_dir, command=_command_line(),
            overrides=overrides, display=_display(quiet, console), console=console,
            report=_trial_report(study, trial),
        )
        _report_run(finished.path, summary, json_, quiet)
    raise typer.Exit(code=_exit_code(summary))


@app.command(cls=Command)
def resume(
    run_dir: RunDirArg,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Only train.epochs=N, to extend a run; the rest is fixed by the run's "
        "config.yaml.", show_default=False, metavar="train.epochs=N")] = None,
    json_: JsonSummaryOption = False,
    quiet: QuietOption = False,
    study: StudyOption = None,
    trial: TrialOption = None,
) -> None:
    """Continue RUN_DIR where it stopped (interrupted, killed, failed, pruned), or extend it."""
    with _user_errors():
        from seqtrain.experiment import resume_experiment

        console = _stderr()
        finished, summary, trained = resume_experiment(
            run_dir, overrides=set_ or [], command=_command_line(),
            display=_display(quiet, console), console=console,
            report=_trial_report(study, trial),
        )
        if not trained:
            if summary.get("stopped_early"):
                _say(f"{finished.path} stopped early at epoch {summary['stopped_early']} "
                     "(train.early_stopping); nothing to resume", "green")
            else:
                _say(f"{finished.path} has completed its {summary['epochs']} epochs "
                     "already; nothing to resume (extend it with --set train.epochs=N)", "green")
            typer.echo(json.dumps(summary, indent=2) if json_ else str(finished.path))
            return
        _report_run(finished.path, summary, json_, quiet)
    raise typer.Exit(code=_exit_code(summary))


def _trial_report(folder: Optional[Path], number: Optional[int]):
    """The study trial a search's run reports to (`--study FOLDER --trial N`), if any."""
    if folder is None and number is None:
        return None
    if folder is None or number is None:
        raise SeqtrainError("--study and --trial go together (seqtrain sweep --search sets "
                            "them for its trials)")
    from seqtrain.study import TrialReport, load_settings

    return TrialReport(folder, number, load_settings(folder))


def _display(quiet: bool, console: Console) -> str:
    """Live bars on a terminal, a line per epoch elsewhere, nothing with --quiet."""
    return "quiet" if quiet else ("rich" if console.is_terminal else "plain")


def _command_line() -> str:
    return shlex.join(["seqtrain", *sys.argv[1:]])


def _exit_code(summary: dict) -> int:
    if summary["status"] == "interrupted" and summary.get("signal") == "SIGTERM":
        return EXIT_TERMINATED
    return EXIT_CODES[summary["status"]]


def _report_run(path: Path, summary: dict, json_: bool, quiet: bool) -> None:
    console = _stderr()
    if not quiet and not summary.get("epochs_run"):
        # An empty table says nothing: a run stopped before its first epoch ended (the
        # interrupted run's resume hint follows).
        _say(f"{summary['name']}: no epoch finished", "yellow")
    elif not quiet:
        from seqtrain.report import summary_table

        console.print(summary_table(summary))
        for warning in summary.get("warnings") or []:  # told once on an epoch line: again
            _say(f"warning (epoch {warning['epoch']}): {warning['message']}", "yellow")
    if summary["status"] == "interrupted":
        from seqtrain.report import describe_point

        point = summary.get("resume_point")
        saved = (f"saved {describe_point(point['epoch'], point['step'])}" if point
                 else "nothing saved yet")
        _say(f"interrupted ({summary.get('signal') or 'stopped'}; {saved}); continue with:\n"
             f"  seqtrain resume {shlex.quote(str(path))}", "yellow")
    elif summary["status"] == "pruned" and not quiet:
        _say(f"pruned at epoch {summary.get('pruned_at')} by its search's pruner; its state "
             f"is saved there: `seqtrain resume {shlex.quote(str(path))}` trains it on", "yellow")
    elif summary.get("error"):
        _say(f"error: {summary['error']}", "red")
    typer.echo(json.dumps(summary, indent=2) if json_ else str(path))


@app.command(cls=Command)
def eval(  # noqa: A001 (the command's name is the user's word)
    run_dir: RunDirArg,
    inputs: Annotated[Optional[Path], typer.Argument(
        help="Score every window or sequence of this file instead (the form `predict` reads, "
        "with targets); writes eval-<hash>.json.", show_default=False, metavar="INPUT")]
    = None,
    checkpoint: Annotated[str, typer.Option(
        "--checkpoint", help="Which checkpoint: best or last.")] = "best",
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Evaluate on other data: data.key=value (e.g. data.sequence_length=200). "
        "Writes eval-<hash>.json.", show_default=False, metavar="data.KEY=VALUE")] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | gpu | gpu:N.")] = "auto",
    json_: Annotated[bool, typer.Option(
        "--json", help="Print the result (eval.json, or eval-<hash>.json) on stdout.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Re-evaluate RUN_DIR's checkpoint on its test split (or INPUT); writes eval.json."""
    with _user_errors():
        from seqtrain.evaluate import evaluate_run

        result = evaluate_run(run_dir, checkpoint=checkpoint, device=_checked_device(device),
                              overrides=set_ or [], inputs=inputs)
    for warning in result.get("warnings", []):
        _say(f"warning: {warning}", "yellow")
    if not quiet:
        from seqtrain.report import eval_table

        _stderr().print(eval_table(result))
    typer.echo(json.dumps(result, indent=2) if json_ else str(run_dir / result["file"]))


@app.command(cls=Command)
def predict(
    run_dir: RunDirArg,
    inputs: Annotated[Optional[Path], typer.Argument(
        help="New inputs, in the form the run's task reads: an .npz (the run's array names), "
        "a CSV (the run's columns), or for text runs a .txt of one text per line.",
        show_default=False, metavar="INPUT")] = None,
    split: Annotated[Optional[str], typer.Option(
        "--split", help="Predict the run's own split instead (train, val or test), with the "
        "true values beside.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write to this file: .csv, .jsonl or .npz (default: CSV on "
        "stdout).", show_default=False)] = None,
    checkpoint: Annotated[str, typer.Option(
        "--checkpoint", help="Which checkpoint: best or last.")] = "best",
    device: Annotated[str, typer.Option("--device", help="auto | cpu | gpu | gpu:N.")] = "auto",
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", help="Sequences per call of the model (default: 1024).",
        show_default=False)] = None,
    attention: Annotated[bool, typer.Option(
        "--attention", help="Add each sequence's attention weight at every step (runs "
        "trained with model.attention).")] = False,
    json_: Annotated[bool, typer.Option(
        "--json", help="JSON lines on stdout instead of CSV; with -o, a JSON report instead of "
        "the file's path.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Predict with RUN_DIR's model on INPUT (or --split), the run's preprocessing applied."""
    with _user_errors():
        from seqtrain.predict import predict_run

        predictions, report = predict_run(
            run_dir, inputs, split=split, output=output, checkpoint=checkpoint,
            device=_checked_device(device), batch_size=batch_size, attention=attention)
    for warning in report["warnings"]:
        _say(f"warning: {warning}", "yellow")
    if not quiet:
        from seqtrain.report import predict_line

        _say(predict_line(report), "default")
    if output is not None:
        typer.echo(json.dumps(report, indent=2) if json_ else str(output))
        return
    try:
        (predictions.write_jsonl if json_ else predictions.write_csv)(sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader has all it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@app.command(cls=Command)
def export(
    run_dir: RunDirArg,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="The folder to create (it must not exist).",
        show_default=False)],
    format_: Annotated[str, typer.Option(
        "--format", help="saved_model (TensorFlow Serving) or onnx (needs: pip install "
        "'seqtrain\\[onnx]').")] = "saved_model",
    checkpoint: Annotated[str, typer.Option(
        "--checkpoint", help="Which checkpoint: best or last.")] = "best",
    json_: Annotated[bool, typer.Option(
        "--json", help="Print what was exported as JSON instead of the folder's path.")]
    = False,
    quiet: QuietOption = False,
) -> None:
    """Export RUN_DIR's model with its preprocessing.json, to serve without seqtrain."""
    with _user_errors():
        from seqtrain.export import export_run

        exported = export_run(run_dir, output, format=format_, checkpoint=checkpoint)
    if not quiet:
        names = ", ".join(exported["inputs"])
        _say(f"exported {exported['checkpoint']}.keras as {exported['format']} to {output} "
             f"(input {names}; preprocessing.json beside it)", "green")
    typer.echo(json.dumps(exported, indent=2) if json_ else str(output))


def _checked_device(device: str) -> str:
    from seqtrain.config import check_device

    try:
        check_device(device)
    except ValueError as err:
        raise SeqtrainError(f"--device {err}") from None
    if "," in device:
        raise SeqtrainError(f"--device got {device!r}; eval runs on one device: auto, cpu, gpu "
                            "or gpu:N")
    return device


@app.command(cls=Command)
def validate(
    config: ConfigArg,
    set_: SetOption = None,
    json_: Annotated[bool, typer.Option(
        "--json", help="Print the resolved config as JSON instead of YAML.")] = False,
) -> None:
    """Check CONFIG and print the resolved config (defaults filled in); no TensorFlow."""
    with _user_errors():
        from seqtrain.config import dump_config, load_config
        from seqtrain.data.registry import check_files

        experiment = load_config(config, set_ or [])
        check_files(experiment.data)
    typer.echo(json.dumps(experiment.model_dump(mode="json"), indent=2) if json_
               else dump_config(experiment).rstrip("\n"))
    _say(f"{config}: valid", "green")


@app.command(cls=Command)
def schema(
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write it to FILE (atomically) and print FILE, instead of the "
        "schema on stdout.", show_default=False, metavar="FILE")] = None,
) -> None:
    """Print the JSON Schema of experiment files, for editors to check and complete them.

    A YAML file whose first line is `# yaml-language-server: $schema=PATH` is checked and
    completed as you type in VS Code's YAML extension or any yaml-language-server editor;
    configs/seqtrain.schema.json is this schema.
    """
    with _user_errors():
        from seqtrain import schema as schemas

        if output is None:
            typer.echo(schemas.schema_text(), nl=False)
            return
        schemas.write_schema(output)
    typer.echo(str(output))


@app.command(cls=Command)
def sweep(
    config: ConfigArg,
    grid: Annotated[Optional[list[str]], typer.Option(
        "--grid", help="A grid axis: key.path=v1,v2,... Repeatable; trials are the product.",
        show_default=False, metavar="KEY=V1,V2", autocompletion=completion.grid_keys)] = None,
    set_: SetOption = None,
    seeds: Annotated[int, typer.Option(
        "--seeds", help="Seeds per grid point: the config's seed, seed + 1, ...")] = 1,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Trials run at once.")] = 1,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="Sweep folder name under --runs-dir.  \\[default: <name>-sweep-<hash>, "
        "<name>-search-<hash> for --search]",
        show_default=False)] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Parent of the sweep folder.")]
    = Path("runs"),
    shard: Annotated[Optional[str], typer.Option(
        "--shard", help="Run only slice I of N of the trials, e.g. 2/4.", show_default=False,
        metavar="I/N")] = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Also resume trials that failed.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List the trials and their run directories; train nothing.")] = False,
    measure: Annotated[bool, typer.Option(
        "--measure", help="With --dry-run: time a few real steps of each distinct trial and "
        "estimate the sweep's time.")] = False,
    executor: Annotated[str, typer.Option(
        "--executor", help="local: child processes here, --jobs at a time; ray: Ray tasks "
        "on a cluster (pip install 'seqtrain\\[ray]').")] = "local",
    address: Annotated[Optional[str], typer.Option(
        "--address", help="Ray: the cluster's address, e.g. 10.0.0.1:6379.  \\[default: "
        "RAY_ADDRESS, a local cluster, or a new local instance]", show_default=False)] = None,
    cpus_per_trial: Annotated[float, typer.Option(
        "--cpus-per-trial", help="Ray: CPUs each trial reserves.")] = 1.0,
    gpus_per_trial: Annotated[float, typer.Option(
        "--gpus-per-trial", help="Ray: GPUs each trial reserves (fractions share one).")] = 0.0,
    json_: Annotated[bool, typer.Option(
        "--json", help="Print the trials' results (or plan) as JSON on stdout.")] = False,
    columns: Annotated[Optional[str], typer.Option(
        "--columns", help="The results table's columns, e.g. best_val_loss,test_mae,"
        "wall_seconds.  \\[default: by the task's kind: mse/mae for regression, accuracy for "
        "classification]", show_default=False, metavar="A,B,...")] = None,
    search: Annotated[Optional[str], typer.Option(
        "--search", help="Search instead of a grid: an Optuna study drawing --trials from "
        "--space (pip install 'seqtrain\\[search]').", show_default=False,
        metavar="tpe|random")] = None,
    trials: Annotated[Optional[int], typer.Option(
        "--trials", help="Search: trials the study holds when done (re-run with more to "
        "extend it).", show_default=False, metavar="N")] = None,
    space: Annotated[Optional[list[str]], typer.Option(
        "--space", help="Search: a setting and its range: KEY=float(lo,hi), float(lo,hi,log), "
        "int(lo,hi), int(lo,hi,log) or choice(a,b,...). Repeatable.", show_default=False,
        metavar="KEY=SPEC",
        autocompletion=completion.space_keys)] = None,
    objective: Annotated[Optional[str], typer.Option(
        "--objective", help="Search: the epoch metric to optimise, also each trial's "
        "train.monitor.  \\[default: the config's train.monitor]", show_default=False,
        metavar="METRIC")] = None,
    direction: Annotated[Optional[str], typer.Option(
        "--direction", help="Search: min or max.  \\[default: max for accuracy, else min]",
        show_default=False, metavar="min|max")] = None,
    prune: Annotated[str, typer.Option(
        "--prune", help="Search: stop trials whose objective falls behind the median of "
        "earlier trials at the same epoch (median), or never (none).", metavar="median|none")]
    = "median",
    quiet: QuietOption = False,
) -> None:
    """Run a grid (or, with --search, an Optuna search) of CONFIG variants under one folder.

    Re-run the same command to resume it.
    """
    with _user_errors():
        from seqtrain import sweep as sweeps
        from seqtrain.executors import check_options, make_executor

        chosen = sweeps.parse_columns(columns) if columns is not None else None
        if jobs < 1:
            raise SeqtrainError(f"--jobs got {jobs}; expected 1 or more")
        if measure and not dry_run:
            raise SeqtrainError("--measure estimates without training: use it with --dry-run")
        searching = _search_options(search, trials, space, objective, direction, prune, grid,
                                    seeds, shard, measure, retry_failed)
        if searching:
            check_options(executor, jobs=jobs, address=address, cpus_per_trial=cpus_per_trial,
                          gpus_per_trial=gpus_per_trial)
            _search(config, search, trials, space, set_ or [], objective, direction, prune,
                    name, runs_dir, dry_run, chosen, json_, quiet,
                    lambda count: make_executor(executor, jobs=jobs, trials=count,
                                                address=address, cpus_per_trial=cpus_per_trial,
                                                gpus_per_trial=gpus_per_trial))
            return
        plan = sweeps.plan_sweep(config, grid or [], set_ or [], seeds, name, runs_dir)
        index, count = sweeps.parse_shard(shard)
        trials = sweeps.shard(plan.trials, index, count)
        if dry_run:
            check_options(executor, jobs=jobs, address=address, cpus_per_trial=cpus_per_trial,
                          gpus_per_trial=gpus_per_trial)
            _list_trials(plan, trials, retry_failed, jobs, measure, json_, quiet)
            if not quiet:
                _say(f"{len(trials)} of {len(plan.trials)} trials (shard {index}/{count}); "
                     "nothing trained (--dry-run)", "green")
            return
        runner = sweeps.Sweep(
            plan, make_executor(executor, jobs=jobs, trials=len(trials), address=address,
                                cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial),
            retry_failed, f"{index}/{count}",
            say=(lambda line: None) if quiet else (lambda line: _say(line, "default")))
        results = runner.run(trials)
        if not quiet:
            _table_console().print(sweeps.comparison_table(sweeps.compare(plan), chosen))
        typer.echo(json.dumps(results, indent=2) if json_ else str(plan.folder))
    if runner.stopping and any(r["action"] == "not started" or r["status"] == "interrupted"
                               for r in results):
        # (A signal after the last trial ended stopped nothing: the sweep has ended.)
        stopped = [r["trial"] for r in results if r["status"] == "interrupted"]
        _say(f"sweep interrupted ({'SIGTERM' if runner.stopping == 15 else 'SIGINT'}"
             + (f"; stopped {', '.join(stopped)}" if stopped else "")
             + "); run the same command again to resume it:\n  " + _command_line(), "yellow")
        raise typer.Exit(code=EXIT_TERMINATED if runner.stopping == 15 else EXIT_INTERRUPTED)
    if any(r["status"] != "completed" for r in results):
        failed = [r["trial"] for r in results if r["status"] != "completed"]
        _say(f"{len(failed)} trial(s) did not complete: {', '.join(failed)}; see "
             f"{plan.folder / 'logs'}", "red")
        raise typer.Exit(code=EXIT_TRAINING_FAILED)


def _search_options(search, trials, space, objective, direction, prune, grid, seeds, shard,
                    measure, retry_failed) -> bool:
    """Whether the sweep is a search; refuses options that belong to the other kind."""
    if search is None:
        given = [flag for flag, value in (("--trials", trials), ("--space", space),
                                          ("--objective", objective),
                                          ("--direction", direction))
                 if value is not None]
        if prune != "median":
            given.append("--prune")
        if given:
            raise SeqtrainError(f"{', '.join(given)} {'belongs' if len(given) == 1 else 'belong'}"
                                " to a search: add --search tpe (or "
                                "random)")
        return False
    refused = [(grid, "--grid", "give the values as --space KEY=choice(a,b,...)"),
               (seeds != 1, "--seeds", "a search draws settings, not seeds: re-run the best "
                "config with `seqtrain sweep BEST.yaml --seeds 5` to see its spread"),
               (shard, "--shard", "the study hands out trials: raise --jobs, or use "
                "--executor ray"),
               (measure, "--measure", "a search's trials are drawn as it goes: time one "
                "with `seqtrain plan --measure`"),
               (retry_failed, "--retry-failed", "the study records a failed trial as failed "
                "and draws past it; continue its run with `seqtrain resume RUN_DIR`")]
    for given, flag, instead in refused:
        if given:
            raise SeqtrainError(f"{flag} does not apply to --search: {instead}")
    if trials is None:
        raise SeqtrainError("--search needs --trials N: how many trials the study holds "
                            "when done")
    return True


def _search(config, search, trials, space, sets, objective, direction, prune, name, runs_dir,
            dry_run, chosen, json_, quiet, executor_for) -> None:
    """`sweep --search`: run (or with --dry-run, show) an Optuna study of runs."""
    from seqtrain import search as searches
    from seqtrain import study as studies
    from seqtrain.atomic import finite
    from seqtrain.listing import kind_columns

    plan = searches.plan_search(config, space or [], sets, search=search, trials=trials,
                                objective=objective, direction=direction, prune=prune,
                                name=name, runs_dir=runs_dir)
    studies.import_optuna()  # before anything is written: say how to install it
    if dry_run and not (plan.folder / studies.JOURNAL).exists():
        specs = [param.spec for param in plan.space]
        typer.echo(json.dumps({"folder": str(plan.folder), "search": search, "space": specs,
                               "objective": plan.settings.objective,
                               "direction": plan.settings.direction, "prune": prune,
                               "budget": trials, "trials": [], "best": None}, indent=2) if json_
                   else "\n".join(specs))
        if not quiet:
            _say(f"a new study of {trials} trials in {plan.folder} ({search}, {prune} "
                 f"pruning, {plan.settings.direction}imise {plan.settings.objective}); "
                 "nothing trained (--dry-run)", "green")
        return
    results = []
    runner = None
    if not dry_run:
        runner = searches.Search(plan, executor_for(trials),
                                 say=(lambda line: None) if quiet
                                 else (lambda line: _say(line, "default")))
        results = runner.run()
    result = searches.report(plan)
    rows = result["trials"]
    if dry_run and not json_:
        for row in rows:
            value = "-" if row["value"] is None else f"{row['value']:.6g}"
            typer.echo(f"{row['status']:>11}  {value:>10}  {row['run_dir'] or row['trial']}")
    if dry_run and not quiet:
        more = max(0, trials - len(rows))
        _say(f"the study holds {len(rows)} trials; the same command without --dry-run "
             + (f"would draw {more} more (--trials {trials})" if more else
                "would draw none (raise --trials for more)") + "; nothing trained (--dry-run)",
             "green")
    if not quiet:
        columns = chosen or kind_columns(row["kind"] for row in rows if row["kind"])
        _table_console().print(searches.search_table(rows, plan.settings.objective, columns))
        for line in searches.describe(result):
            _say(line, "default")
    if json_:
        typer.echo(json.dumps(finite({**result, "results": results}), indent=2))
    elif not dry_run:
        typer.echo(str(plan.folder))
    if runner is None:
        return
    if runner.refused:
        raise SeqtrainError(f"{searches.REFUSALS_IN_A_ROW} trials in a row were refused at "
                            f"start, so the search stopped; the last: {runner.refused}")
    if runner.stopping and any(r["status"] == "interrupted" for r in results):
        stopped = [r["trial"] for r in results if r["status"] == "interrupted"]
        _say(f"search interrupted ({'SIGTERM' if runner.stopping == 15 else 'SIGINT'}"
             + (f"; stopped {', '.join(stopped)}" if stopped else "")
             + "); run the same command again to resume it:\n  " + _command_line(), "yellow")
        raise typer.Exit(code=EXIT_TERMINATED if runner.stopping == 15 else EXIT_INTERRUPTED)
    if runner.stopping:
        raise typer.Exit(code=EXIT_TERMINATED if runner.stopping == 15 else EXIT_INTERRUPTED)
    failed = [r["trial"] for r in results if r["status"] not in ("completed", "pruned")]
    if failed:
        _say(f"{len(failed)} trial(s) did not complete: {', '.join(failed)}; see "
             f"{plan.folder / 'logs'}", "red")
        raise typer.Exit(code=EXIT_TRAINING_FAILED)


def _table_console() -> Console:
    """The stderr console for a table, never cutting it to 80 columns.

    On a terminal the table fits the window; elsewhere (a log, a pipe) rich would assume 80
    columns and squeeze or cut cells, so the width is whatever the table needs.
    """
    console = _stderr()
    if not console.is_terminal:
        console.width = 100_000  # a table is only as wide as its cells: no padding
    return console


def _list_trials(plan, trials, retry_failed: bool, jobs: int, measure: bool,
                 json_: bool, quiet: bool = False) -> None:
    """`sweep --dry-run`: each trial's action and run directory, and with `measure`, times."""
    from seqtrain import sweep as sweeps

    listed = [{"trial": t.stem, "index": t.index, "overrides": list(t.overrides),
               "run_dir": str(plan.run_dir(t)),
               "action": sweeps.trial_action(plan, t, retry_failed)} for t in trials]
    estimate = None
    if measure:
        estimate = sweeps.estimate(plan, trials, [item["action"] for item in listed], jobs)
        for item, seconds in zip(listed, estimate["trial_seconds"], strict=True):
            item["estimated_seconds"] = round(seconds, 1)
    if json_:
        typer.echo(json.dumps({"trials": listed, "estimate": estimate} if measure else listed,
                              indent=2))
    else:
        for item in listed:
            time = f"~{item['estimated_seconds']:.0f}s  " if measure else ""
            typer.echo(f"{item['action']:>6}  {time}{item['run_dir']}")
    if estimate and not quiet:
        _say(f"estimate: {estimate['total_seconds']:.0f} s of trials (each with "
             f"{estimate['startup_seconds']:.1f} s of start-up), about "
             f"{estimate['wall_seconds']:.0f} s with --jobs {jobs}; on Ray, divide the total "
             "by the trials the cluster runs at once", "default")


@app.command(cls=Command)
def plan(
    config: ConfigArg,
    set_: SetOption = None,
    measure: Annotated[bool, typer.Option(
        "--measure", help="Also time a few real training steps and estimate the run.")] = False,
    require_cudnn: Annotated[bool, typer.Option(
        "--require-cudnn", help="Exit 2 unless every recurrent layer can use cuDNN.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show what CONFIG will do before training: shapes, FLOPs, device, cuDNN."""
    with _user_errors():
        from seqtrain.config import load_config
        from seqtrain.plan import plan_experiment

        experiment = load_config(config, set_ or [])
        result = plan_experiment(experiment, measure_steps=measure)
        if require_cudnn and not result["cudnn"]["eligible"]:
            reasons = "; ".join(result["layers"][0]["cudnn_blockers"])
            raise SeqtrainError(f"--require-cudnn: the cuDNN kernel cannot run this model: "
                                f"{reasons}")
    if json_:
        typer.echo(json.dumps(result, indent=2))
        return
    from seqtrain.report import plan_text

    typer.echo(plan_text(result))


@app.command("ls", cls=Command)
def ls(
    folders: Annotated[Optional[list[Path]], typer.Argument(
        help="Folders holding runs (searched recursively).  \\[default: runs]",
        show_default=False, metavar="DIR", autocompletion=completion.run_dirs)] = None,
    sort: Annotated[Optional[str], typer.Option(
        "--sort", help="Column or config/summary path to sort by; -KEY for descending.",
        show_default=False)] = None,
    filter_: Annotated[Optional[list[str]], typer.Option(
        "--filter", help="Keep runs where key=value (model.cell=gru, status=completed). "
        "Repeatable.", show_default=False, metavar="KEY=VALUE")] = None,
    format_: Annotated[str, typer.Option(
        "--format", help="table, csv or json (every column and metric, unless --columns).")]
    = "table",
    columns: Annotated[Optional[str], typer.Option(
        "--columns", help="Columns to show, e.g. run,path,cell,units,test_mae (or config or "
        "summary paths such as model.dropout, train_seconds).  \\[default: the table's "
        "results follow the runs' kind of task: mse/mae for regression, accuracy for "
        "classification]", show_default=False,
        metavar="A,B,...")] = None,
) -> None:
    """List runs with their settings and results; reads only run-directory files."""
    with _user_errors():
        from seqtrain import listing

        if format_ not in ("table", "csv", "json"):
            raise SeqtrainError(f"--format got {format_!r}; expected table, csv or json")
        records = listing.list_runs(folders or [Path("runs")], filter_ or [], sort)
        chosen = listing.parse_columns(columns, records) if columns is not None else None
    if format_ == "csv":
        typer.echo(listing.to_csv(records, chosen), nl=False)
    elif format_ == "json":
        typer.echo(listing.to_json(records, chosen))
    else:
        typer.echo(listing.to_table(records, chosen))
        _say(f"{len(records)} run(s)", "default")


@app.command(cls=Command)
def plot(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run directories or folders of runs (a sweep folder).", show_default=False,
        metavar="RUN_DIR", autocompletion=completion.run_dirs)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The PNG to write.")]
    = Path("plot.png"),
    metric: Annotated[Optional[str], typer.Option(
        "--metric", help="A metrics.csv column: val_loss, val_accuracy, loss, ... "
        "\\[default: val_loss]", show_default=False)] = None,
    gradient_flow: Annotated[bool, typer.Option(
        "--gradient-flow", help="Overlay the runs' gradient flow instead: the gradient "
        "reaching each time step, relative to the last step (gradient_flow.csv).")] = False,
    epoch: Annotated[Optional[int], typer.Option(
        "--epoch", help="With --gradient-flow: the epoch drawn \\[default: each run's last].",
        min=1, show_default=False)] = None,
) -> None:
    """Overlay the learning curves of several runs; seeds of one setting become a band.

    With --gradient-flow: each run's gradient reaching every time step, one line per run.
    """
    with _user_errors():
        if gradient_flow and metric is not None:
            raise SeqtrainError(f"--metric {metric} and --gradient-flow draw different "
                                "plots: give one of them")
        if epoch is not None and not gradient_flow:
            raise SeqtrainError(f"--epoch {epoch} picks the epoch of --gradient-flow; the "
                                "learning curves show every epoch: add --gradient-flow")
        if gradient_flow:
            from seqtrain.gradient_plots import plot_gradient_flow

            path = plot_gradient_flow(run_dirs, output, epoch,
                                      skipped=lambda line: _say(line, "yellow"))
        else:
            from seqtrain.plots import plot_runs

            path = plot_runs(run_dirs, output, metric or "val_loss",
                             skipped=lambda line: _say(line, "yellow"))
    typer.echo(str(path))


@app.command("plot-attention", cls=Command)
def plot_attention(
    run_dir: RunDirArg,
    inputs: Annotated[Optional[Path], typer.Argument(
        help="Inputs in the form the run's task reads (as for predict).", show_default=False,
        metavar="INPUT")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The PNG to write.")]
    = Path("attention.png"),
    split: Annotated[Optional[str], typer.Option(
        "--split", help="Draw sequences of the run's own split instead (train, val or test).",
        show_default=False)] = None,
    count: Annotated[int, typer.Option("--count", help="Sequences drawn (the first ones).")] = 4,
    checkpoint: Annotated[str, typer.Option(
        "--checkpoint", help="Which checkpoint: best or last.")] = "best",
    device: Annotated[str, typer.Option("--device", help="auto | cpu | gpu | gpu:N.")] = "auto",
) -> None:
    """Draw the attention weights of RUN_DIR's model (model.attention) over INPUT's steps."""
    with _user_errors():
        from seqtrain.plots import plot_attention as draw

        path = draw(run_dir, inputs, output, split=split, count=count, checkpoint=checkpoint,
                    device=_checked_device(device))
    typer.echo(str(path))


def main() -> None:
    """Console-script entry point, and `python -m seqtrain`'s.

    The name is fixed so that `python -m seqtrain` answers shell completion as `seqtrain`
    (`_SEQTRAIN_COMPLETE`), not as `python -m seqtrain`.
    """
    app(prog_name="seqtrain")
