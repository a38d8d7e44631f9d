"""`seqtrain ls`: find run directories and read them into comparable rows.

Only run-directory files are read (`summary.json`, `config.yaml`), with the C YAML parser
when PyYAML has it: no TensorFlow, no pydantic, so hundreds of runs list in well under a
second. A broken or partial run directory becomes a row with its problem as status; it
never stops the listing.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seqtrain.errors import SeqtrainError
from seqtrain.rundir import RunDir

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Column -> where its value lives: a summary path (s:) or a config path (c:).
COLUMNS: dict[str, str] = {
    "run": "",
    "name": "s:name",
    "status": "s:status",
    "cell": "c:model.cell",
    "units": "c:model.units",
    "layers": "c:model.num_layers",
    "epochs": "",
    "best_val_loss": "s:best.val_loss",
    "best_val_accuracy": "s:best.val_accuracy",
    "test_accuracy": "s:test.accuracy",
    "test_mse": "s:test.mse",
    "test_mae": "s:test.mae",
    "wall_seconds": "s:wall_seconds",
    "samples_per_second": "s:samples_per_second",
}


@dataclass
class RunRecord:
    """What one run directory says about itself."""

    path: Path
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def status(self) -> str:
        if self.problem == "no summary.json" and self.config and not RunDir(self.path).trained:
            status = "running"  # being set up (summary.json comes last), or killed doing it
        elif self.problem:
            return f"broken: {self.problem}"
        else:
            status = self.summary.get("status", "unknown")
        if status == "running" and not is_locked(self.path / "run.lock"):
            return "killed"  # nobody holds the lock: the process died without a word
        return status

    def get(self, key: str) -> Any:
        """A column, a config path (`model.cell`) or a summary path (`best.val_loss`).

        Config paths win when a key is in both: users filter on settings.
        """
        if key == "status":
            return self.status
        if key in COLUMNS and COLUMNS[key]:
            source, path = COLUMNS[key].split(":")
            return _dig(self.summary if source == "s" else self.config, path)
        if key == "run":
            return self.path.name
        if key == "epochs":
            return f"{self.summary.get('epochs_run', '?')}/{self.summary.get('epochs', '?')}"
        found = _dig(self.config, key)
        return found if found is not None else _dig(self.summary, key)

    def row(self) -> dict[str, Any]:
        return {column: self.get(column) for column in COLUMNS}


def _dig(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def is_locked(lock: Path) -> bool:
    """Whether a live process holds `lock` (a run's `run.lock`)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock taken to test
    return False


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() or (path / "summary.json").is_file()


def find_runs(folders: Iterable[Path]) -> list[Path]:
    """Run directories in or under `folders` (a folder may itself be a run directory).

    Raises:
        SeqtrainError: A folder does not exist.
    """
    found: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            raise SeqtrainError(f"{folder} is not a folder; pass folders that hold runs, "
                                "such as runs/ or a sweep folder")
        if is_run_dir(folder):
            found.append(folder)
            continue
        for parent, dirs, _ in os.walk(folder):
            dirs.sort()
            keep = []
            for name in dirs:
                if name.startswith("."):
                    continue
                path = Path(parent) / name
                if is_run_dir(path):
                    found.append(path)  # a run's own folders hold no other runs
                else:
                    keep.append(name)
            dirs[:] = keep
    return found


def read_run(path: Path) -> RunRecord:
    """Read a run directory; problems are recorded, never raised."""
    record = RunRecord(path)
    try:
        record.summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        record.problem = "no summary.json"
    except (OSError, ValueError) as err:
        record.problem = f"summary.json unreadable ({type(err).__name__})"
    if isinstance(record.summary, dict) and isinstance(record.summary.get("config"), dict):
        record.config = record.summary["config"]  # the copy `run` keeps there: no YAML
        return record
    try:
        config = yaml.load((path / "config.yaml").read_text(encoding="utf-8"), Loader=_Loader)
        record.config = config if isinstance(config, dict) else {}
    except FileNotFoundError:
        record.problem = record.problem or "no config.yaml"
    except (OSError, ValueError, yaml.YAMLError) as err:
        record.problem = record.problem or f"config.yaml unreadable ({type(err).__name__})"
    if not isinstance(record.summary, dict):
        record.summary, record.problem = {}, "summary.json is not an object"
    return record


def parse_filters(filters: Iterable[str]) -> list[tuple[str, Any]]:
    """`key=value` strings as (key, value), the value read as a YAML scalar.

    Raises:
        SeqtrainError: A filter has no `=`.
    """
    parsed = []
    for text in filters:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise SeqtrainError(f"--filter {text!r}: expected key=value, for example "
                                "model.cell=gru or status=completed")
        try:
            parsed.append((key.strip(), yaml.load(value, Loader=_Loader)))
        except yaml.YAMLError:
            parsed.append((key.strip(), value))
    return parsed


def matches(record: RunRecord, filters: list[tuple[str, Any]]) -> bool:
    for key, wanted in filters:
        actual = record.get(key)
        # `off`, `no` and `on` are YAML booleans but config values too (cpu_tuning: off)
        spelled = (("on", "yes", "true") if wanted else ("off", "no", "false")) \
            if isinstance(wanted, bool) else ()
        if actual != wanted and str(actual) != str(wanted) and actual not in spelled:
            return False
    return True


def sort_records(records: list[RunRecord], key: str | None) -> list[RunRecord]:
    """Sort by a column or path; `-key` for descending; missing values always last."""
    if not key:
        return sorted(records, key=lambda r: str(r.path))
    descending = key.startswith("-")
    key = key.lstrip("-")
    present = [r for r in records if r.get(key) is not None]
    missing = [r for r in records if r.get(key) is None]
    try:
        present.sort(key=lambda r: r.get(key), reverse=descending)
    except TypeError:  # mixed types: compare as text
        present.sort(key=lambda r: str(r.get(key)), reverse=descending)
    return present + missing


def list_runs(folders: Iterable[Path], filters: Iterable[str] = (),
              sort: str | None = None) -> list[RunRecord]:
    """The runs under `folders` that match every filter, sorted."""
    parsed = parse_filters(filters)
    records = [read_run(path) for path in find_runs(folders)]
    return sort_records([r for r in records if matches(r, parsed)], sort)


def to_csv(records: list[RunRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(r.row() for r in records)
    return buffer.getvalue()


def to_json(records: list[RunRecord]) -> str:
    return json.dumps([{**r.row(), "path": str(r.path)} for r in records], indent=2)


_LEFT = ("run", "name", "status", "cell")


def to_table(records: list[RunRecord]) -> str:
    """Aligned plain-text columns, like `column -t`.

    Fast for hundreds of runs (a rich table is not), and easy to `grep`, `sort -k` or read
    in a terminal.
    """
    cells = [list(COLUMNS)] + [[_shown(v) for v in r.row().values()] for r in records]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for row in cells:
        lines.append("  ".join(
            cell.ljust(width) if column in _LEFT else cell.rjust(width)
            for cell, width, column in zip(row, widths, COLUMNS, strict=True)).rstrip())
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)
