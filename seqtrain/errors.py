"""Expected failures, each carrying what to tell the user and the exit code it maps to.

Anything that is not a `SeqtrainError` is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_TRAINING_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # SIGINT, as shells report it
EXIT_TERMINATED = 143  # SIGTERM


class SeqtrainError(Exception):
    """Bad input the user can fix: a config, a flag, a file or a run directory.

    The message is shown as is, without a traceback; the process exits with `exit_code`.
    """

    exit_code = EXIT_USAGE


class ConfigError(SeqtrainError):
    """A config file or override that does not validate; lists every problem at once."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid config {source} ({count}):\n{body}")


class RunDirError(SeqtrainError):
    """A run directory that cannot be created, or is not a usable run directory."""


class DataError(SeqtrainError):
    """A data file that is missing, unreadable, or not shaped as its config says."""


class DeviceError(SeqtrainError):
    """A requested device that TensorFlow does not see."""


class ResourceError(SeqtrainError):
    """A run that cannot fit in this machine's memory, refused before it starts."""


class TrainingFailed(SeqtrainError):
    """Training ended without completing (the loss diverged): exit 1."""

    exit_code = EXIT_TRAINING_FAILED


class StorageError(SeqtrainError):
    """A file could not be written (disk full, read-only folder): training failed, exit 1."""

    exit_code = EXIT_TRAINING_FAILED
