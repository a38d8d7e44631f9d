"""Crash-safe file writes: a reader sees the old complete file or the new one, never a torn one.

Every write goes to a temporary file in the target's folder, is flushed and fsynced, then
renamed over the target, and the folder is fsynced so the rename survives a power loss.

Fault injection, for tests only: `SEQTRAIN_FAULT=<kind>:<text>:<n>` in the environment
makes the n-th commit of a file whose name contains <text> fail, right before its rename:
the exact moment a crash would be most harmful. <kind> is `kill` (the process SIGKILLs
itself), `term` (it sends itself SIGTERM, as a sweep forwards one, and goes on) or `enospc`
(the write fails as on a full disk). TensorBoard flushes count as writes of `events`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seqtrain.errors import StorageError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def storage_errors(what: Path) -> Iterator[None]:
    """Turn an OSError (disk full, read-only folder, quota) into a StorageError naming `what`."""
    try:
        yield
    except StorageError:
        raise
    except OSError as err:
        raise StorageError(f"cannot write {what}: {err.strerror or err}") from err


def permissions(mode: int = 0o666) -> int:
    """`mode` less this process's umask: what a plain `open` or `mkdir` would give."""
    return mode & ~_UMASK


# Every temporary file or folder seqtrain makes starts with this: `.tmp-<name>.XXXX<suffix>`.
# A process killed mid-write leaves one behind; `remove_temporaries` finds them all by it.
TEMP_PREFIX = ".tmp-"


def temporary_prefix(path: Path) -> str:
    """The name prefix of `path`'s temporary files and folders."""
    return f"{TEMP_PREFIX}{path.name}."


def temporary_path(path: Path, suffix: str = "") -> Path:
    """A new, empty, uniquely named file beside `path` (0666 less the umask)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=suffix)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    os.close(fd)
    return Path(tmp)


def commit(tmp: Path, path: Path) -> None:
    """Flush `tmp` to disk, rename it over `path`, then persist the folder entry.

    Removes `tmp` if anything fails, so no temporary file is left behind.
    """
    try:
        with open(tmp, "rb+") as file:
            os.fsync(file.fileno())
        inject_fault(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


_commits: dict[str, int] = {}


def inject_fault(path: Path) -> None:
    """Fail, kill or signal as `SEQTRAIN_FAULT` asks at this write of `path` (tests only)."""
    spec = os.environ.get("SEQTRAIN_FAULT")
    if not spec:
        return
    kind, text, nth = spec.split(":")
    if text not in path.name:
        return
    _commits[text] = _commits.get(text, 0) + 1
    if _commits[text] != int(nth):
        return
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "term":
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically.

    Raises:
        StorageError: The disk is full or the folder is not writable.
    """
    with storage_errors(path):
        tmp = temporary_path(path)
        try:
            tmp.write_bytes(data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        commit(tmp, path)


def write_text(path: Path, text: str) -> None:
    """`write_bytes` for UTF-8 text."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    """`write_bytes` for an indented JSON document; NaN and infinities become null.

    Strict JSON has no NaN, and `jq` rejects it: a diverged loss is recorded as null.
    """
    write_text(path, json.dumps(finite(obj), indent=2, allow_nan=False) + "\n")


def link(source: Path, path: Path) -> None:
    """Make `path` another name for `source`'s content, atomically (hard link, else copy)."""
    with storage_errors(path):
        tmp = temporary_path(path)
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            import shutil

            shutil.copyfile(source, tmp)
        commit(tmp, path)


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files and folders killed writers left in `folder` (not below).

    Also the temporary files of releases before `TEMP_PREFIX` (`.<name>.XXXX.tmp`). Only
    while no process can be writing there (a run's lock is held). Returns what it deleted.
    """
    import shutil

    found = sorted({*folder.glob(f"{TEMP_PREFIX}*"),
                    *(p for p in folder.glob(".*.tmp") if p.is_file())})
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def fsync_dir(path: Path) -> None:
    """Persist a folder's entries (renames, new files)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def finite(obj: Any) -> Any:
    """`obj` with NaN and infinities (at any depth) replaced by None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {key: finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(value) for value in obj]
    return obj
