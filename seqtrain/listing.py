"""`seqtrain ls`: find run directories and read them into comparable rows.

Only run-directory files are read (`summary.json`, `config.yaml`), with the C YAML parser
when PyYAML has it: no TensorFlow, no pydantic, so hundreds of runs list in well under a
second. A broken or partial run directory becomes a row with its problem as status; it
never stops the listing.
"""

from __future__ import annotations

import csv
import difflib
import fcntl
import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seqtrain.errors import SeqtrainError
from seqtrain.rundir import RunDir

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Column -> where its value lives: a summary path (s:) or a config path (c:); "" computed.
COLUMNS: dict[str, str] = {
    "run": "",
    "path": "",
    "name": "s:name",
    "status": "",
    "task": "c:data.task",
    "kind": "",
    "cell": "c:model.cell",
    "units": "c:model.units",
    "layers": "c:model.num_layers",
    "epochs": "",
    "best_epoch": "s:best_epoch",
    "best_val_loss": "s:best.val_loss",
    "best_val_accuracy": "s:best.val_accuracy",
    "best_val_mse": "s:best.val_mse",
    "best_val_mae": "s:best.val_mae",
    "test_loss": "s:test.loss",
    "test_accuracy": "s:test.accuracy",
    "test_mse": "s:test.mse",
    "test_mae": "s:test.mae",
    "wall_seconds": "s:wall_seconds",
    "samples_per_second": "s:samples_per_second",
    # The gradient probe (docs/gradient-flow.md): its last decay, and what it warned of.
    "first_to_last": "s:gradient_flow.gradient_first_to_last",
    "warnings": "",
}

# The results that mean something for each kind of task (summary.json's `task.kind`).
KIND_COLUMNS: dict[str, tuple[str, ...]] = {
    "classification": ("best_val_accuracy", "test_accuracy"),
    "regression": ("best_val_mse", "best_val_mae", "test_mse", "test_mae"),
}
TABLE_HEAD = ("run", "name", "status", "cell", "units", "layers", "epochs", "best_val_loss")
TABLE_TAIL = ("wall_seconds", "samples_per_second")
SECTIONS = ("best", "test", "final")  # of summary.json: column `best_val_mse` is best.val_mse


@dataclass
class RunRecord:
    """What one run directory says about itself."""

    path: Path
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    root: Path | None = None  # the folder it was listed under: `run` is relative to it

    @property
    def run(self) -> str:
        """The run's path under the listed folder (`sweep-ab12cd/cell=gru`), else its name."""
        if self.root is not None and self.path != self.root:
            try:
                return self.path.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return self.path.name

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

    @property
    def kind(self) -> str | None:
        """`classification` or `regression`, as the run recorded it; None when unknown.

        Runs from before summary.json kept `task.kind` are known by their metrics.
        """
        task = self.summary.get("task")
        if isinstance(task, dict) and task.get("kind") in KIND_COLUMNS:
            return task["kind"]
        names = {name for section in SECTIONS if isinstance(self.summary.get(section), dict)
                 for name in self.summary[section]}
        if any(name.endswith("accuracy") for name in names):
            return "classification"
        if names & {"mse", "mae", "val_mse", "val_mae"}:
            return "regression"
        return None

    def get(self, key: str) -> Any:
        """A column, a config path (`model.cell`) or a summary path (`best.val_loss`).

        Config paths win when a key is in both: users filter on settings. `best_NAME`,
        `test_NAME` and `final_NAME` are the metric NAME of that part of summary.json.
        """
        if key == "status":
            return self.status
        if key == "kind":
            return self.kind
        if key in COLUMNS and COLUMNS[key]:
            source, path = COLUMNS[key].split(":")
            return _dig(self.summary if source == "s" else self.config, path)
        if key == "run":
            return self.run
        if key == "path":
            return str(self.path)
        if key == "epochs":
            return f"{self.summary.get('epochs_run', '?')}/{self.summary.get('epochs', '?')}"
        if key == "warnings":  # their kinds: the messages are in summary.json
            warnings = self.summary.get("warnings")
            return ",".join(w.get("kind", "?") for w in warnings
                            if isinstance(w, dict)) if isinstance(warnings, list) else None
        found = _dig(self.config, key)
        if found is None:
            found = _dig(self.summary, key)
        if found is None:
            section, _, metric = key.partition("_")
            if section in SECTIONS and metric:
                found = _dig(self.summary, f"{section}.{metric}")
        return found

    def has(self, path: str) -> bool:
        """Whether the config or summary has the dotted `path`, even if its value is null.

        `best_NAME`, `test_NAME` and `final_NAME` count as `best.NAME`..., as in `get`.
        """
        if _has(self.config, path) or _has(self.summary, path):
            return True
        section, _, metric = path.partition("_")
        return section in SECTIONS and bool(metric) and _has(self.summary, f"{section}.{metric}")

    def applies(self, column: str) -> bool:
        """False for a result of the other kind of task (test_accuracy of a regression)."""
        kind = self.kind
        return kind is None or not any(column in columns for other, columns
                                       in KIND_COLUMNS.items() if other != kind)

    def row(self, columns: Iterable[str] | None = None) -> dict[str, Any]:
        return {column: self.get(column) for column in (columns or COLUMNS)}


_ABSENT = object()


def _dig(tree: Any, dotted: str, default: Any = None) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return default
        tree = tree[part]
    return tree


def _has(tree: Any, dotted: str) -> bool:
    """Whether `dotted` is in `tree`, whatever its value (null included)."""
    return _dig(tree, dotted, _ABSENT) is not _ABSENT


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


def find_runs_under(folders: Iterable[Path]) -> list[tuple[Path, Path]]:
    """Run directories in or under `folders`, each with the folder it was found under.

    A folder may itself be a run directory (then it is its own folder); a run under two of
    the folders is listed once.

    Raises:
        SeqtrainError: A folder does not exist.
    """
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()  # folders may overlap (`runs runs/sweep`): each run once

    def add(path: Path, folder: Path) -> None:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            found.append((path, folder))

    for folder in folders:
        if not folder.is_dir():
            raise SeqtrainError(f"{folder} is not a folder; pass folders that hold runs, "
                                "such as runs/ or a sweep folder")
        if is_run_dir(folder):
            add(folder, folder)
            continue
        for parent, dirs, _ in os.walk(folder):
            dirs.sort()
            keep = []
            for name in dirs:
                if name.startswith("."):
                    continue
                path = Path(parent) / name
                if is_run_dir(path):
                    add(path, folder)  # a run's own folders hold no other runs
                else:
                    keep.append(name)
            dirs[:] = keep
    return found


def read_run(path: Path, root: Path | None = None) -> RunRecord:
    """Read a run directory (found under `root`); problems are recorded, never raised."""
    record = RunRecord(path, root=root)
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
    records = [read_run(path, root) for path, root in find_runs_under(folders)]
    parsed = parse_filters(filters)
    check_keys([key for key, _ in parsed], records, "--filter")
    if sort:
        check_keys([sort.lstrip("-")], records, "--sort")
    return sort_records([r for r in records if matches(r, parsed)], sort)


def table_columns(records: list[RunRecord]) -> list[str]:
    """The table's default columns: settings, then the results of the runs' kinds of task."""
    return [*TABLE_HEAD, *kind_columns(record.kind for record in records), *TABLE_TAIL]


def kind_columns(kinds: Iterable[str | None]) -> list[str]:
    """The results that mean something for these kinds of task (`ls` and `sweep` tables).

    Regression shows validation and test `mse` and `mae`, classification accuracy; both
    kinds show both.
    """
    kinds = set(kinds)
    return [c for kind, columns in KIND_COLUMNS.items() if kind in kinds for c in columns]


def all_columns(records: list[RunRecord]) -> list[str]:
    """Every column, then every other metric a run recorded (`best_loss`, `final_val_mae`...).

    Not `path`: JSON rows have it anyway, and `--columns` can ask for it.
    """
    extra: list[str] = []
    for section in SECTIONS:
        for record in records:
            metrics = record.summary.get(section)
            for name in metrics if isinstance(metrics, dict) else ():
                column = f"{section}_{name}"
                if column not in COLUMNS and column not in extra:
                    extra.append(column)
    return [*(c for c in COLUMNS if c not in (*TABLE_TAIL, "path")), *extra, *TABLE_TAIL]


def parse_columns(text: str, records: list[RunRecord]) -> list[str]:
    """`ls --columns run,cell,test_mae` as a list, each name checked.

    A name is a column (`all_columns`) or a config/summary path (`model.dropout`) that a
    listed run has, whatever its value (`train.clipnorm` is null in most runs).

    Raises:
        SeqtrainError: No names, or a name that is neither.
    """
    return check_columns(text, [*all_columns(records), "path"], "run,cell,units,test_mae",
                         lambda name: is_key(name, records), PATHS_HINT,
                         suggest=known_keys(records))


def known_keys(records: list[RunRecord]) -> list[str]:
    """Every column and every dotted config and summary path of `records`: to suggest from."""
    def paths(tree: Any, prefix: str = "") -> Iterable[str]:
        for key, value in tree.items() if isinstance(tree, dict) else ():
            yield prefix + str(key)
            yield from paths(value, f"{prefix}{key}.")

    keys = dict.fromkeys([*all_columns(records), "path"])
    for record in records:
        keys.update(dict.fromkeys([*paths(record.config), *paths(record.summary)]))
    return list(keys)


PATHS_HINT = "or a config or summary path such as model.dropout or train_seconds"


def is_key(name: str, records: list[RunRecord]) -> bool:
    """Whether `--columns`, `--sort` and `--filter` accept `name`.

    A column, or a config or summary path (`model.dropout`, `train_seconds`) that a listed
    run has, whatever its value (`train.clipnorm` is null in most runs). Anything goes when
    no run is listed.
    """
    return name in COLUMNS or not records or any(r.has(name) for r in records)


def check_keys(names: Iterable[str], records: list[RunRecord], option: str) -> None:
    """`--sort` and `--filter` keys, checked by the rule `--columns` follows (`is_key`).

    Raises:
        SeqtrainError: A key that no listed run has.
    """
    for name in names:
        if not name.strip():
            raise SeqtrainError(f"{option} got {name!r}; expected a column or a config or "
                                "summary path, such as model.units")
        if not is_key(name, records):
            close = difflib.get_close_matches(name, known_keys(records), n=1)
            raise SeqtrainError(
                f"{option}: unknown key {name!r}. Expected a column ("
                f"{', '.join(all_columns(records))}) {PATHS_HINT}"
                + (f". Did you mean {close[0]!r}?" if close else ""))


def check_columns(text: str, allowed: Iterable[str], example: str,
                  is_path: Callable[[str], bool] | None = None, paths_hint: str = "",
                  option: str = "--columns", suggest: Iterable[str] | None = None) -> list[str]:
    """`--columns A,B,...` as a list of names from `allowed` (`ls` and `sweep`).

    With `is_path`, a name it accepts is allowed too (`paths_hint` says so in the error).
    `option` names the option in the error; `suggest` is what a "did you mean" picks from
    (default `allowed`).

    Raises:
        SeqtrainError: No names, or one that is not allowed.
    """
    allowed = list(allowed)
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name in allowed or (is_path is not None and is_path(name)):
            continue
        close = difflib.get_close_matches(name, list(suggest or allowed), n=1)
        raise SeqtrainError(
            f"{option}: unknown column {name!r}. Expected names from: {', '.join(allowed)}"
            + (f"; {paths_hint}" if paths_hint else "")
            + (f". Did you mean {close[0]!r}?" if close else ""))
    if not names:
        raise SeqtrainError(f"{option} got {text!r}; expected names separated by commas, "
                            f"such as {example}")
    return names


def to_csv(records: list[RunRecord], columns: list[str] | None = None) -> str:
    """CSV of `columns`; by default every column and metric (`all_columns`)."""
    columns = columns or all_columns(records)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(r.row(columns) for r in records)
    return buffer.getvalue()


def to_json(records: list[RunRecord], columns: list[str] | None = None) -> str:
    """JSON rows of `columns` (by default every column and metric), and each run's path."""
    columns = columns or all_columns(records)
    return json.dumps([{**r.row(columns), "path": str(r.path)} for r in records], indent=2)


_LEFT = ("run", "path", "name", "status", "task", "kind", "cell")


def to_table(records: list[RunRecord], columns: list[str] | None = None) -> str:
    """Aligned plain-text columns, like `column -t`; `table_columns` by default.

    Fast for hundreds of runs (a rich table is not), easy to `grep`, and never cut to a
    terminal's width: long lines are the pager's business (`less -S`). A result that
    does not apply to a run's kind of task (accuracy of a regression) is left blank; one
    that is missing is `-`.
    """
    columns = columns or table_columns(records)
    cells = [list(columns)] + [[_shown(r.get(c)) if r.applies(c) else "" for c in columns]
                               for r in records]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for row in cells:
        lines.append("  ".join(
            cell.ljust(width) if column in _LEFT else cell.rjust(width)
            for cell, width, column in zip(row, widths, columns, strict=True)).rstrip())
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)
