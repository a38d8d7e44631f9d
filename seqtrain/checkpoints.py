"""A run's saved models: `checkpoints/best.keras` and `last.keras`, checked and loaded."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from seqtrain.errors import RunDirError
from seqtrain.rundir import RunDir

if TYPE_CHECKING:
    import keras

CHECKPOINTS = ("best", "last")


def check_checkpoint_name(checkpoint: str) -> None:
    """Raises RunDirError unless `checkpoint` is best or last."""
    if checkpoint not in CHECKPOINTS:
        raise RunDirError(f"--checkpoint got {checkpoint!r}; expected best or last")


def checkpoint_file(run: RunDir, checkpoint: str) -> Path:
    """The run's `best` or `last` checkpoint file.

    Raises:
        RunDirError: Another name, or a checkpoint the run never saved.
    """
    check_checkpoint_name(checkpoint)
    path = run.checkpoint(checkpoint)
    if not path.is_file():
        raise RunDirError(f"checkpoint {path} is missing: the run stopped before it saved one"
                          + ("; try --checkpoint last" if checkpoint == "best" else ""))
    return path


def load_checkpoint(path: Path) -> keras.Model:
    """Load a `.keras` checkpoint with `safe_mode=True` (no arbitrary code from the file).

    Raises:
        RunDirError: The file is missing or cannot be loaded.
    """
    import keras

    import seqtrain.layers  # noqa: F401  (registers the layers a model may hold)

    if not path.is_file():
        raise RunDirError(f"checkpoint {path} is missing")
    check_archive(path)
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as err:  # any failure to read the file is a bad file, not a bug
        raise RunDirError(
            f"checkpoint {path} cannot be loaded ({type(err).__name__}: {err}); "
            "it is damaged or not a Keras model"
        ) from None


def check_archive(path: Path) -> None:
    """Check a .keras file's zip structure and checksums without loading it.

    Raises:
        RunDirError: The file is truncated, overwritten or not a Keras archive.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise RunDirError(f"checkpoint {path} is damaged ({err}); it is not a complete "
                          "Keras archive") from None
    if broken or not {"config.json", "model.weights.h5"} <= names:
        raise RunDirError(f"checkpoint {path} is damaged ({broken or 'entries missing'}); it "
                          "is not a complete Keras archive")
