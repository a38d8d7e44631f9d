"""The run directory: its layout, its atomic creation, and atomic writes of its files.

    runs/<name>-<UTC timestamp>-<hex>/
      config.yaml          the resolved config (defaults filled in)
      overrides.txt        the command line and each --set, one per line
      env.json             versions, devices, host, start time, git commit
      metrics.csv          one row per epoch
      checkpoints/best.keras, checkpoints/last.keras
      checkpoints/resume.json, checkpoints/state-*.keras   what `seqtrain resume` restores
      summary.json         status and results (rewritten as the run progresses)
      eval.json            written by `seqtrain eval`
      tensorboard/         TensorBoard event files (train/, validation/), unless
                           train.tensorboard is false
      preprocessing.json   how raw inputs become model inputs, and outputs predictions
                           (encodings, training-split statistics, padding, windows)
      run.lock             held (flock) by the process training in this directory

No TensorFlow here: listing and reading runs must stay fast.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqtrain.errors import RunDirError, SeqtrainError

if TYPE_CHECKING:
    from seqtrain.config import ExperimentConfig


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory's files."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def overrides(self) -> Path:
        return self.path / "overrides.txt"

    @property
    def env(self) -> Path:
        return self.path / "env.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, which: str) -> Path:
        """`checkpoints/best.keras` or `checkpoints/last.keras`."""
        return self.checkpoints / f"{which}.keras"

    @property
    def preprocessing(self) -> Path:
        return self.path / "preprocessing.json"

    @property
    def normalization(self) -> Path:
        """Feature statistics of `csv_series`, as runs stored them before preprocessing.json."""
        return self.path / "normalization.json"

    @property
    def resume_state(self) -> Path:
        return self.checkpoints / "resume.json"

    @property
    def lock(self) -> Path:
        return self.path / "run.lock"

    @property
    def trained(self) -> bool:
        """Whether training wrote anything yet (`metrics.csv` or `checkpoints/`).

        A folder with a config but no `summary.json` and nothing trained was stopped while
        it was set up (`resume` starts it again); one that trained and lost its summary is
        damaged instead.
        """
        return self.metrics.exists() or self.checkpoints.exists()

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def eval(self) -> Path:
        return self.path / "eval.json"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"


def utc_timestamp() -> str:
    """Now as a compact, sortable, filesystem-safe UTC stamp: 20261126T153000Z."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")
MAX_STEM = 120


def run_stem(name: str, overrides: list[str] = ()) -> str:
    """A readable, filesystem-safe name for a run: the experiment's name and its overrides.

    `shifted-digit-lstm` with `--set model.cell=gru --set model.units=64` gives
    `shifted-digit-lstm.cell=gru.units=64`: each override by its last key, characters
    outside `[A-Za-z0-9._=+-]` replaced by `_`. Past 120 characters the end is cut and a
    hash of the whole override list keeps distinct runs distinct.
    """
    parts = [name]
    for override in overrides:
        key, _, value = override.partition("=")
        if key.strip() == "name":
            continue  # already the first part
        parts.append(_UNSAFE.sub("_", f"{key.strip().rsplit('.', 1)[-1]}={value.strip()}"))
    stem = ".".join(parts)
    if len(stem) > MAX_STEM:
        digest = hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8]
        stem = f"{stem[: MAX_STEM - 9]}~{digest}"
    return stem


def create_run_dir(name: str, runs_dir: Path | None = None, exact: Path | None = None) -> RunDir:
    """Create a new, empty run directory; never reuse or overwrite one.

    Args:
        name: The run's filesystem-safe stem (see `run_stem`).
        runs_dir: Parent folder for a generated `<name>-<timestamp>-<hex>` directory.
        exact: Create exactly this path instead; it must not exist yet.

    Returns:
        The new run directory.

    Raises:
        RunDirError: `exact` exists already, or the parent cannot be created.
    """
    if exact is not None:
        try:
            exact.parent.mkdir(parents=True, exist_ok=True)
            exact.mkdir()
        except FileExistsError:
            raise RunDirError(
                f"run directory {exact} already exists; seqtrain never overwrites a run. "
                "Choose a new --run-dir, or drop it to get a generated name"
            ) from None
        except OSError as err:
            raise RunDirError(f"cannot create run directory {exact}: {err.strerror}") from None
        return RunDir(exact)
    runs_dir = runs_dir or Path("runs")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"cannot create runs folder {runs_dir}: {err.strerror}") from None
    # mkdir is atomic: of two processes racing for one name, exactly one wins; the other
    # draws a new random suffix.
    for _ in range(100):
        path = runs_dir / f"{name}-{utc_timestamp()}-{secrets.token_hex(2)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as err:
            raise RunDirError(
                f"cannot create a run directory in {runs_dir}: {err.strerror}"
            ) from None
        return RunDir(path)
    raise RunDirError(f"could not find a free run directory name in {runs_dir}")


def open_run_dir(path: Path) -> RunDir:
    """An existing run directory, checked to hold at least its config.

    Raises:
        RunDirError: The path does not exist, is not a folder, or is not a run directory.
    """
    if not path.exists():
        raise RunDirError(f"run directory {path} does not exist")
    if not path.is_dir():
        raise RunDirError(f"{path} is a file, not a run directory")
    run = RunDir(path)
    if not run.config.is_file():
        raise RunDirError(
            f"{path} is not a seqtrain run directory (no config.yaml in it); pass a folder "
            "that `seqtrain run` created, such as runs/<name>-<timestamp>-<hex>"
        )
    return run


def check_destination(output: Path, run_dir: Path, instead: str,
                      makes_folders: bool = False) -> None:
    """Refuse a `-o` destination in a missing folder, or inside the run directory.

    A run directory holds what seqtrain wrote and reads back, so no command writes its own
    outputs there.

    Args:
        output: The path given to `-o`.
        run_dir: The run directory, named as the user gave it.
        instead: What to do instead, ending the message: `write the plot elsewhere`.
        makes_folders: The command creates missing folders, so only the run directory counts.

    Raises:
        SeqtrainError: The folder of `output` does not exist, or `output` is inside `run_dir`.
    """
    if not makes_folders and not output.parent.is_dir():
        raise SeqtrainError(f"-o {output}: the folder {output.parent} does not exist")
    if output.resolve().is_relative_to(run_dir.resolve()):
        raise SeqtrainError(f"-o {output} is inside the run directory {run_dir}, whose files "
                            f"seqtrain keeps; {instead}")


def stored_preprocessing(run: RunDir, task: str) -> dict:
    """What the run learned from its data (`preprocessing.json`), for task `task`.

    A run made before that file existed gets the equivalent of what it stored then.

    Raises:
        RunDirError: The file is damaged.
    """
    if run.preprocessing.exists():
        return read_json(run.preprocessing)
    from seqtrain.data.preprocessing import legacy

    return legacy(task, read_json(run.normalization) if run.normalization.exists() else None)


def read_run_config(run: RunDir) -> ExperimentConfig:
    """The resolved config a run was trained with.

    Raises:
        RunDirError: It no longer validates (edited by hand, or from another version).
    """
    from seqtrain.config import load_config
    from seqtrain.errors import ConfigError

    try:
        return load_config(run.config)
    except ConfigError as err:
        raise RunDirError(
            f"run directory {run.path} has a config that no longer loads:\n{err}"
        ) from None


def changed_files(run: RunDir, config: ExperimentConfig) -> list[str]:
    """Data files that differ from the ones the run was trained on."""
    from seqtrain.data.registry import fingerprints

    try:
        recorded = {f["path"]: f for f in read_json(run.env).get("data_files", [])}
    except RunDirError:
        return []
    return [f"{now['path']} changed since training (SHA-256 {was['sha256'][:12]}... then, "
            f"{now['sha256'][:12]}... now): the metrics are not on the data the run saw"
            for now in fingerprints(config.data)
            if (was := recorded.get(now["path"])) and was["sha256"] != now["sha256"]]


def read_json(path: Path) -> dict[str, Any]:
    """A run directory's JSON file.

    Raises:
        RunDirError: The file is missing or not valid JSON.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(
            f"{path} is not valid JSON ({err}); the run directory is damaged"
        ) from None


class RunLock:
    """An exclusive `flock` on `run.lock`, held while a process trains in the run directory.

    The kernel releases it when the process dies, however it dies, so a stale lock (its
    process gone) is simply taken over; the file's content (pid, host) only serves the
    message shown to a second process.
    """

    def __init__(self, run: RunDir):
        self.run = run
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            fd = os.open(self.run.lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # the folder went away, or is not writable
            raise RunDirError(f"cannot lock run directory {self.run.path}: "
                              f"{err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirError(
                f"run directory {self.run.path} is being trained by {holder}; wait for it to "
                "finish, or stop it (Ctrl-C) and run `seqtrain resume` afterwards"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None
