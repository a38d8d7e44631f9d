"""The `seqtrain` command: parses, delegates to the library, maps errors to exit codes.

No TensorFlow at import time: `--help` and `validate` must answer instantly. Results go
to stdout (a path, YAML, or JSON with `--json`); progress, tables and errors to stderr.

Exit codes: 0 success, 1 training failed (diverged, or a bug: traceback shown),
2 usage/config/input error, 130 interrupted.
"""

from __future__ import annotations

import json
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console

from seqtrain import __version__
from seqtrain.errors import EXIT_INTERRUPTED, EXIT_TRAINING_FAILED, SeqtrainError

app = typer.Typer(
    name="seqtrain",
    help="Train recurrent networks (SimpleRNN, LSTM, GRU) from YAML experiment files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)

SET_HELP = "Override a config value: key.path=value (YAML scalar). Repeatable."
EXIT_CODES = {"completed": 0, "diverged": EXIT_TRAINING_FAILED, "failed": EXIT_TRAINING_FAILED,
              "interrupted": EXIT_INTERRUPTED}


def _stderr() -> Console:
    # Created per call so that test runners that swap sys.stderr see the output.
    return Console(stderr=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Print expected failures as one short message and exit with their code."""
    try:
        yield
    except SeqtrainError as err:
        _stderr().print(f"error: {err}", markup=False, highlight=False, style="red")
        raise typer.Exit(code=err.exit_code) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seqtrain {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Train recurrent networks (SimpleRNN, LSTM, GRU) from YAML experiment files."""


@app.command()
def run(
    config: Path = typer.Argument(..., help="Experiment YAML file.", show_default=False),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP, show_default=False),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Parent folder for the run directory."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Exact path of the new run directory (must not exist)."),
    json_: bool = typer.Option(False, "--json", help="Print summary.json on stdout instead of the path."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or tables on stderr."),
) -> None:
    """Train CONFIG into a new run directory and print its path."""
    with _user_errors():
        from seqtrain.config import load_config

        overrides = set_ or []
        experiment = load_config(config, overrides)
        from seqtrain.train import run_experiment

        console = _stderr()
        display = "quiet" if quiet else ("rich" if console.is_terminal else "plain")
        run_, summary = run_experiment(
            experiment, runs_dir=runs_dir, exact_dir=run_dir,
            command=shlex.join(["seqtrain", *sys.argv[1:]]), overrides=overrides,
            display=display, console=console,
        )
    _report_run(run_.path, summary, json_, quiet)
    raise typer.Exit(code=EXIT_CODES[summary["status"]])


def _report_run(path: Path, summary: dict, json_: bool, quiet: bool) -> None:
    console = _stderr()
    if not quiet:
        from seqtrain.report import summary_table

        console.print(summary_table(summary))
    if summary["status"] == "interrupted":
        console.print(f"interrupted after {summary['epochs_run']} epoch(s); partial results "
                      f"in {path}", markup=False, style="yellow")
    elif summary.get("error"):
        console.print(f"error: {summary['error']}", markup=False, style="red")
    typer.echo(json.dumps(summary, indent=2) if json_ else str(path))


@app.command()
def eval(  # noqa: A001 (the command's name is the user's word)
    run_dir: Path = typer.Argument(..., help="A run directory made by `seqtrain run`.", show_default=False),
    checkpoint: str = typer.Option("best", "--checkpoint", help="Which checkpoint: best or last."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | gpu | gpu:N."),
    json_: bool = typer.Option(False, "--json", help="Print eval.json on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table on stderr."),
) -> None:
    """Re-evaluate RUN_DIR's checkpoint on its test split; writes eval.json."""
    with _user_errors():
        from seqtrain.evaluate import evaluate_run

        result = evaluate_run(run_dir, checkpoint=checkpoint, device=_checked_device(device))
    if not quiet:
        from seqtrain.report import eval_table

        _stderr().print(eval_table(result))
    typer.echo(json.dumps(result, indent=2) if json_ else str(run_dir / "eval.json"))


def _checked_device(device: str) -> str:
    from seqtrain.config import check_device

    try:
        return check_device(device)
    except ValueError as err:
        raise SeqtrainError(f"--device {err}") from None


@app.command()
def validate(
    config: Path = typer.Argument(..., help="Experiment YAML file.", show_default=False),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP, show_default=False),
    json_: bool = typer.Option(False, "--json", help="Print the resolved config as JSON."),
) -> None:
    """Check CONFIG and print the resolved config (defaults filled in); no TensorFlow."""
    with _user_errors():
        from seqtrain.config import dump_config, load_config

        experiment = load_config(config, set_ or [])
    typer.echo(json.dumps(experiment.model_dump(mode="json"), indent=2) if json_
               else dump_config(experiment).rstrip("\n"))
    _stderr().print(f"{config}: valid", markup=False, style="green")


def main() -> None:
    """Console-script entry point."""
    app()
