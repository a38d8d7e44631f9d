"""Tables from CSV files: a multivariate time series cut into windows, or sequences by id.

    data:
      task: csv_series
      path: weather.csv            # relative to the config file's folder
      columns: [temp, pressure]    # the input features
      target: temp                 # the column to forecast
      sequence_length: 24          # steps per input window
      horizon: 1                   # values forecast after each window
      date_column: time            # optional: sort the rows by it first
      normalization: standard      # standard | window | none

The rows are split chronologically (first train, then validation, then test), and windows
are cut inside each part, so no window spans a boundary and no future leaks into training.
Statistics come from the training part only and are stored in the run directory
(`preprocessing.json`), where `eval`, `predict` and `export` find them:

- `standard`: each feature standardised with the training part's mean and deviation; the
  target standardised inside the model (`seqtrain.data.preprocessing`).
- `window`: each window made relative to its last row, `(x - x_last) / scale`, with
  `scale` the deviation of each column's step-to-step change in the training part, and
  the targets the change of the target from its last observed value: the model then
  never sees the level, so a series that trends out of the training range stays in range.
  Forecasts add the level back.
- `none`: raw values.

`csv_sequences` groups rows by an id into variable-length sequences, padded and masked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from seqtrain.data.csvfile import finite, read_rows
from seqtrain.data.files import TARGET_NORMALIZATION_DESCRIPTION, with_target_statistics
from seqtrain.data.preprocessing import missing_step
from seqtrain.data.registry import (
    Dataset,
    FileTaskParams,
    Split,
    TaskSpec,
    register_reader,
    register_task,
    regression_baseline,
)
from seqtrain.errors import DataError
from seqtrain.fields import PositiveInt

if TYPE_CHECKING:
    import numpy as np


class CsvSeriesParams(FileTaskParams):
    """Parameters of `task: csv_series` (the file at `path` has a header row)."""

    task: Literal["csv_series"] = Field("csv_series", description="Task name.")
    columns: list[str] = Field(min_length=1, description="Columns used as input features.")
    target: str = Field(description="The column to forecast.")
    sequence_length: PositiveInt = Field(24, description="Steps in each input window.")
    horizon: PositiveInt = Field(1, description="Values forecast after each window.")
    date_column: str | None = Field(
        None, description="Sort the rows by this column first (ISO dates or numbers)."
    )
    missing: Literal["error", "zero", "ffill"] = Field(
        "error", description="Empty or NaN cells: error; 0; or the last value carried forward."
    )
    normalization: Literal["standard", "window", "none"] = Field(
        "standard", description="standard: standardise with the training part's statistics; "
        "window: each window relative to its last row (for series that leave the training "
        "range); none: raw. Metrics stay in the target's units."
    )

    def task_kind(self) -> str:
        return "regression"

    def per_step(self) -> bool:
        return False


def read_table(params: CsvSeriesParams, path: Path | None = None,
               with_target: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The feature columns (L, F), the target (L,) and each row's key (L,), in time order.

    The key is the date column's text, else the row's place in the file (0-based). The
    missing-value policy is applied here, to training data and new inputs alike.

    Raises:
        DataError: A column is missing, a cell is not a number, or a cell is empty or NaN
            and `missing: error`.
    """
    import numpy as np

    path = Path(path or params.path)
    names = [*params.columns, *([params.target] if with_target else [])]
    rows = read_rows(path, [*names, *([params.date_column] if params.date_column else [])])
    if params.date_column:
        rows = _in_order(rows, params.date_column, path)
        keys = np.array([row[params.date_column].strip() for _, row in rows])
    else:
        keys = np.arange(len(rows))
    lines = [line for line, _ in rows]
    values = np.empty((len(rows), len(names)), dtype=np.float64)
    for index, (line, row) in enumerate(rows):
        for column, name in enumerate(names):
            text = row[name].strip()
            values[index, column] = finite(text, path, line, name) if text else np.nan
    if np.isnan(values).any():
        if params.missing == "error":
            row, column = map(int, np.argwhere(np.isnan(values))[0])
            raise DataError(f"{path}, line {lines[row]}, column {names[column]!r} is empty or "
                            f"NaN; {MISSING_HINT}")
        if params.missing == "zero":
            values = np.nan_to_num(values, nan=0.0)
        else:
            from seqtrain.data.files import forward_fill

            values = forward_fill(values[None])[0]  # the table is one long sequence
    features = values[:, :len(params.columns)]
    return features, (values[:, -1] if with_target else None), keys


MISSING_HINT = ("set data.missing to zero or ffill (a trained run keeps the policy it was "
                "trained with: clean the file)")


def _sort_key(text: str):
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text.strip())


def _in_order(rows: list[tuple[int, dict]], column: str, path: Path,
              where: str = "") -> list[tuple[int, dict]]:
    """`rows` sorted by `column`: numbers, or text such as ISO dates, each value once.

    `where` names the group of rows in messages, e.g. " in sequence 'a'".

    Raises:
        DataError: A cell of `column` is empty, the column mixes numbers and text (sorted
            apart, almost surely not what was meant), or a value appears twice.
    """
    for line, row in rows:
        if not row[column].strip():
            raise DataError(f"{path}, line {line}, column {column!r} is empty; every row needs "
                            "a value there: the rows are put in order by it")
        if not math.isfinite(_sort_key(row[column])[1]):  # nan never compares: no order
            raise DataError(f"{path}, line {line}, column {column!r}: {row[column].strip()!r} "
                            "is not a value to put the rows in order by; use a finite number "
                            "or a date")
    keyed = sorted(((_sort_key(row[column]), line, row) for line, row in rows),
                   key=lambda item: item[0])
    if keyed[0][0][0] != keyed[-1][0][0]:
        number = next(item for item in keyed if item[0][0] == 0)
        text = next(item for item in keyed if item[0][0] == 1)
        raise DataError(f"{path}, column {column!r} mixes numbers (line {number[1]}: "
                        f"{number[2][column]!r}) and text (line {text[1]}: {text[2][column]!r}); "
                        "the rows are put in order by it: use numbers, or text that sorts in "
                        "time order such as ISO dates (2024-01-31T08:00)")
    for (key, first, row), (again, second, _) in zip(keyed, keyed[1:], strict=False):
        if key == again:
            raise DataError(f"{path}, lines {first} and {second}: column {column!r} holds "
                            f"{row[column].strip()!r} twice{where}; each row needs its own "
                            "value to be put in order: remove or merge the duplicate")
    return [(line, row) for _, line, row in keyed]


def fit_statistics(params: CsvSeriesParams, features: np.ndarray) -> dict:
    """The input statistics of `params.normalization`, from the training part's features."""
    import numpy as np

    if params.normalization == "standard":
        std = features.std(axis=0)
        return {"mean": features.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}
    if params.normalization == "window":
        steps = np.diff(features, axis=0).std(axis=0) if len(features) > 1 else np.ones(
            features.shape[1])
        return {"scale": np.where(steps > 0, steps, 1.0).tolist()}
    return {}


def series_windows(features: np.ndarray, target: np.ndarray | None, keys: np.ndarray,
                   statistics: dict, length: int, horizon: int, complete: bool = True) -> Split:
    """The windows of one stretch of rows, as the model reads them.

    Args:
        features: (L, F), in time order.
        target: (L,), or None when the target column was not read.
        keys: (L,): what names each row.
        statistics: `normalization` and its statistics (see `fit_statistics`).
        length: Rows per window.
        horizon: Target values after each window.
        complete: Only windows whose `horizon` targets are all in the rows (training,
            evaluation); else every window, the last one ending at the last row (forecasts
            beyond the data), without targets.

    Returns:
        The windows (N, length, F) as float32; the targets (N, horizon) for `complete`
        windows (changes from the last value under `window`); keys and, under `window`,
        levels of each window's last row: the forecast origin.
    """
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    count = len(features) - length + 1 - (horizon if complete else 0)
    x = np.moveaxis(sliding_window_view(features, length, axis=0)[:count], -1, 1)
    mode = statistics.get("normalization", "none")
    if mode == "standard":
        x = (x - np.array(statistics["mean"])) / np.array(statistics["std"])
    elif mode == "window":
        x = (x - x[:, -1:, :]) / np.array(statistics["scale"])
    x = np.ascontiguousarray(x, dtype=np.float32)
    origins = np.arange(count) + length - 1
    y = level = None
    if target is not None and mode == "window":
        level = target[origins]
    if target is not None and complete:
        y = sliding_window_view(target[length:], horizon)[:count]
        if level is not None:
            y = y - level[:, None]
        y = y.astype(np.float32)
    return Split(x, y, None, keys[origins], level)


@register_task("csv_series", CsvSeriesParams)
def csv_series(params: CsvSeriesParams, seed: int, preprocessing: dict | None = None) -> Dataset:
    """Read, split chronologically, normalise and window the series (see the module)."""
    import numpy as np

    features, target, keys = read_table(params)
    bounds = np.cumsum([round(len(features) * f) for f in (params.split.train, params.split.val)])
    parts = np.split(np.arange(len(features)), bounds)
    needed = params.sequence_length + params.horizon
    for name, rows in zip(("train", "val", "test"), parts, strict=True):
        if len(rows) < needed:
            raise DataError(
                f"{params.path}: the {name} part has {len(rows)} rows but a window needs "
                f"{needed} (sequence_length {params.sequence_length} + horizon "
                f"{params.horizon}); use more rows, a shorter window or other split fractions")
    stored = (preprocessing or {}).get("input", {})
    statistics = {key: stored[key] for key in ("mean", "std", "scale") if key in stored}
    if not statistics:
        statistics = fit_statistics(params, features[parts[0]])
    statistics["normalization"] = stored.get("normalization", params.normalization)
    train, val, test = (series_windows(features[rows], target[rows], keys[rows], statistics,
                                       params.sequence_length, params.horizon)
                        for rows in parts)
    spec = TaskSpec(timesteps=params.sequence_length, features=len(params.columns),
                    per_step=False, kind="regression", output_dim=params.horizon)
    spec = with_target_statistics(params, spec, train, preprocessing,
                                  statistics["normalization"])
    window = statistics["normalization"] == "window"
    if window or params.target in params.columns:
        last = target[parts[2]][params.sequence_length - 1:][:len(test)]
        predicted = np.zeros_like(test.y) if window else last[:, None]
        baseline = regression_baseline("persistence: the last value again", predicted, test,
                                       spec.output_scale)
    else:
        baseline = regression_baseline("the training mean", float(target[parts[0]].mean()), test,
                                       spec.output_scale)
    inputs = {
        "source": "csv", "columns": list(params.columns), "target": params.target,
        "date_column": params.date_column, "missing": params.missing,
        "sequence_length": params.sequence_length, "horizon": params.horizon,
        **statistics,
        "reading": [
            "read the CSV file (header row); "
            + (f"sort the rows by {params.date_column!r}; " if params.date_column else "")
            + f"take the columns {list(params.columns)} as features"
            + (f" and {params.target!r} for the level" if window
               and params.target not in params.columns else ""),
            missing_step("empty or NaN cells", params.missing),
            f"cut a window of the last {params.sequence_length} rows at every row from row "
            f"{params.sequence_length} on: that row is the forecast origin"],
    }
    output = {"names": [f"{params.target}_t+{h}" for h in range(1, params.horizon + 1)],
              "add_level": params.target if window else None,
              "key": params.date_column or "row"}
    return Dataset(spec=spec, train=train, val=val, test=test, baseline=baseline,
                   preprocessing={"input": inputs, "output": output})


@register_reader("csv_series")
def read_series(params: CsvSeriesParams, path: Path, preprocessing: dict,
                targets: bool = False) -> Split:
    """A CSV of the same columns (any number of rows) as windows at every forecast origin.

    With `targets`, only the windows whose horizon lies inside the file, with their true
    values (`seqtrain eval` on a file); else every window, the last ending at the last row.
    """
    statistics = preprocessing["input"]
    mode = statistics.get("normalization", "none")
    with_target = targets or mode == "window" or params.target in params.columns
    features, target, keys = read_table(params, path, with_target)
    needed = params.sequence_length + (params.horizon if targets else 0)
    if len(features) < needed:
        raise DataError(f"{path} has {len(features)} rows; a window needs {needed} "
                        f"(sequence_length {params.sequence_length}"
                        + (f" + horizon {params.horizon}" if targets else "") + ")")
    return series_windows(features, target, keys, statistics, params.sequence_length,
                          params.horizon, complete=targets)


class CsvSequencesParams(FileTaskParams):
    """Parameters of `task: csv_sequences`: one sequence per id, of any length."""

    task: Literal["csv_sequences"] = Field("csv_sequences", description="Task name.")
    id_column: str = Field(description="Rows with the same id form one sequence.")
    columns: list[str] = Field(min_length=1, description="Columns used as input features.")
    target: str = Field(description="The target column.")
    order_column: str | None = Field(
        None, description="Sort each sequence's rows by this column (ISO dates or numbers)."
    )
    targets: Literal["per_sequence", "per_step"] = Field(
        "per_sequence", description="per_sequence: the target of each sequence's last row; "
        "per_step: the target of every row."
    )
    kind: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: a target column of whole numbers is classes."
    )
    missing: Literal["error", "mask", "zero", "ffill"] = Field(
        "error", description="Empty or NaN feature cells: error; mask the step; 0; or carry "
        "the last value forward."
    )
    normalization: Literal["standard", "none"] = Field(
        "standard", description=TARGET_NORMALIZATION_DESCRIPTION
    )

    def task_kind(self) -> str | None:
        return None if self.kind == "auto" else self.kind

    def per_step(self) -> bool:
        return self.targets == "per_step"


@dataclass(frozen=True)
class Sequences:
    """A CSV's rows grouped by id, and where in the file each step came from.

    Attributes:
        path: The file, for messages.
        x: Features (N, T, F), zero-padded after each sequence's length.
        targets: The target column (N, T), or None when it was not read.
        lengths: Rows in each sequence (N,).
        ids: Each sequence's id: the id column's text (N,).
        lines: Each step's line in the file (N, T), header = 1; 0 for padding.
    """

    path: Path
    x: np.ndarray
    targets: np.ndarray | None
    lengths: np.ndarray
    ids: np.ndarray
    lines: np.ndarray

    def cell(self, n: int, t: int, column: str) -> str:
        """Where step `t` of sequence `n` is, for a message: file, line, column, id, step."""
        return (f"{self.path}, line {self.lines[n, t]}, column {column!r} (sequence "
                f"{str(self.ids[n])!r}, step {t + 1} of {self.lengths[n]})")

    def first_bad_target(self, bad: np.ndarray, per_step: bool) -> tuple[int, int] | None:
        """(n, t) of the first `bad` target the model reads (per sequence: the last row's)."""
        import numpy as np

        steps = np.arange(bad.shape[1])[None, :]
        used = steps < self.lengths[:, None] if per_step else steps == self.lengths[:, None] - 1
        found = np.argwhere(bad & used)
        return tuple(map(int, found[0])) if len(found) else None


SEQUENCE_MISSING_HINT = ("set data.missing to mask, zero or ffill (a trained run keeps the "
                         "policy it was trained with: clean the file)")


def group_sequences(params: CsvSequencesParams, path: Path, with_target: bool) -> Sequences:
    """Rows grouped by id, each group in order; every cell checked, naming its line."""
    import numpy as np

    rows = read_rows(path, [params.id_column, *params.columns,
                        *([params.target] if with_target else []),
                        *([params.order_column] if params.order_column else [])])
    groups: dict[str, list[tuple[int, dict]]] = {}
    for line, row in rows:
        key = row[params.id_column].strip()  # ` a` and `a` are one sequence, as headers are
        if not key:
            raise DataError(f"{path}, line {line}, column {params.id_column!r} is empty; every "
                            "row needs the id of the sequence it belongs to")
        groups.setdefault(key, []).append((line, row))
    if params.order_column:
        groups = {key: _in_order(members, params.order_column, path, f" in sequence {key!r}")
                  for key, members in groups.items()}
    longest = max(len(members) for members in groups.values())
    x = np.zeros((len(groups), longest, len(params.columns)), dtype=np.float64)
    targets = np.zeros((len(groups), longest), dtype=np.float64) if with_target else None
    lines = np.zeros((len(groups), longest), dtype=np.int64)
    lengths = np.array([len(members) for members in groups.values()])
    for n, (key, members) in enumerate(groups.items()):
        for t, (line, row) in enumerate(members):
            lines[n, t] = line
            where = f" (sequence {key!r}, step {t + 1} of {len(members)})"
            for f, column in enumerate(params.columns):
                text = row[column].strip()
                x[n, t, f] = finite(text, path, line, column, where) if text else np.nan
                if params.missing == "error" and np.isnan(x[n, t, f]):
                    raise DataError(f"{path}, line {line}, column {column!r}{where} is empty or "
                                    f"NaN; {SEQUENCE_MISSING_HINT}")
            if with_target:
                text = row[params.target].strip()
                targets[n, t] = finite(text, path, line, params.target, where) if text else (
                    np.nan)
                if np.isnan(targets[n, t]):
                    raise DataError(f"{path}, line {line}, column {params.target!r}{where} is "
                                    "empty or NaN; targets cannot be missing: fill the cell or "
                                    "remove the row")
    return Sequences(path, x, targets, lengths, np.array(list(groups)), lines)


@register_task("csv_sequences", CsvSequencesParams)
def csv_sequences(params: CsvSequencesParams, seed: int,
                  preprocessing: dict | None = None) -> Dataset:
    """Group rows by id into variable-length sequences, right-padded and masked.

    Sequences are shuffled with the seed and cut by `split`; padding is skipped by the
    `Masking` layer and weighs nothing in the loss, as for `npz` with `lengths`.
    """
    import numpy as np

    from seqtrain.data.files import baseline_for, prepare_split, shuffled_split

    table = group_sequences(params, Path(params.path), with_target=True)
    x, targets, lengths = table.x, table.targets, table.lengths
    kind = params.kind
    per_step = params.targets == "per_step"
    if kind == "auto":  # every row's target, as the column reads
        kind = "classification" if table.first_bad_target(
            targets != np.round(targets), per_step=True) is None else "regression"
    if kind == "classification":
        bad = table.first_bad_target((targets != np.round(targets)) | (targets < 0), per_step)
        if bad:
            raise DataError(f"{table.cell(*bad, params.target)}: {targets[bad]:g} is not a "
                            "class; classification targets are whole numbers 0, 1, 2, ... "
                            "(for values, set data.kind: regression)")
    y = _sequence_targets(params, kind, targets, lengths)
    whole = prepare_split(params, kind, 0, "columns", params.target, x, y, lengths)
    train, val, test = shuffled_split(params, replace(whole, keys=table.ids), seed)
    spec = TaskSpec(
        timesteps=x.shape[1], features=len(params.columns), per_step=per_step, kind=kind,
        num_classes=int(y.max()) + 1 if kind == "classification" else 0,
        output_dim=0 if kind == "classification" else 1, masked=True,
    )
    spec = with_target_statistics(params, spec, train, preprocessing)
    inputs = {"source": "csv", "id_column": params.id_column, "order_column": params.order_column,
              "columns": list(params.columns), "missing": params.missing,
              "reading": ["read the CSV file (header row); rows with the same "
                          f"{params.id_column!r} form one sequence"
                          + (f", ordered by {params.order_column!r}" if params.order_column
                             else ", in file order")
                          + f"; the columns {list(params.columns)} are its features",
                          missing_step("empty or NaN feature cells", params.missing)]}
    output = {"key": params.id_column}
    if kind == "regression":
        output["names"] = [params.target]
    return Dataset(spec=spec, train=train, val=val, test=test,
                   baseline=baseline_for(kind, spec, train, test),
                   preprocessing={"input": inputs, "output": output})


def _sequence_targets(params: CsvSequencesParams, kind: str, targets: np.ndarray,
                      lengths: np.ndarray) -> np.ndarray:
    import numpy as np

    if params.targets == "per_sequence":
        targets = targets[np.arange(len(targets)), lengths - 1]
    return targets.astype(np.int64) if kind == "classification" else targets


@register_reader("csv_sequences")
def read_sequences(params: CsvSequencesParams, path: Path, preprocessing: dict,
                   targets: bool = False) -> Split:
    """A CSV with the run's id and feature columns (the target column with `targets`)."""
    import numpy as np

    from seqtrain.data.files import prepare_split

    output = preprocessing["output"]
    table = group_sequences(params, path, with_target=targets)
    x, values, lengths = table.x, table.targets, table.lengths
    y = None
    if targets:
        kind = output["kind"]
        if kind == "classification":
            classes = len(output["classes"])
            bad = table.first_bad_target((values != np.round(values)) | (values < 0)
                                         | (values >= classes), output["per_step"])
            if bad:
                raise DataError(f"{table.cell(*bad, params.target)}: {values[bad]:g} is not a "
                                f"class of this run; its classes are 0 to {classes - 1}")
        y = _sequence_targets(params, kind, values, lengths)
    split = prepare_split(params, output["kind"], 0, "columns", params.target, x, y, lengths,
                          per_step=output["per_step"], path=path)
    return replace(split, keys=table.ids)
