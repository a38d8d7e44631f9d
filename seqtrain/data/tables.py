"""A multivariate time series from a CSV file, cut into forecasting windows.

    data:
      task: csv_series
      path: weather.csv            # relative to the config file's folder
      columns: [temp, pressure]    # the input features
      target: temp                 # the column to forecast
      sequence_length: 24          # steps per input window
      horizon: 1                   # values forecast after each window
      date_column: time            # optional: sort the rows by it first

The rows are split chronologically (first train, then validation, then test), and windows
are cut inside each part, so no window spans a boundary and no future leaks into training.
The features are normalised with the mean and standard deviation of the training part
only; those statistics are stored in the run directory (`normalization.json`) and reused by
`seqtrain eval`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from seqtrain.data.registry import (
    Dataset,
    FileTaskParams,
    Split,
    TaskSpec,
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


def read_table(params: CsvSeriesParams) -> tuple[np.ndarray, np.ndarray]:
    """The feature columns (L, F) and the target (L,) as floats, in time order."""
    import numpy as np

    path = Path(params.path)
    rows = _rows(path, [*params.columns, params.target]
                 + ([params.date_column] if params.date_column else []))
    if params.date_column:
        rows.sort(key=lambda row: _sort_key(row[params.date_column]))
    names = [*params.columns, params.target]
    values = np.empty((len(rows), len(names)), dtype=np.float64)
    for index, row in enumerate(rows):
        for column, name in enumerate(names):
            text = (row[name] or "").strip()
            try:
                values[index, column] = float(text) if text else np.nan
            except ValueError:
                raise DataError(f"{path}, row {index + 2}, column {name!r}: {text!r} is not a "
                                "number") from None
    if np.isnan(values).any():
        if params.missing == "error":
            row, column = map(int, np.argwhere(np.isnan(values))[0])
            raise DataError(f"{path}, column {names[column]!r} is empty or NaN (first at data "
                            f"row {row + 1} in time order); set data.missing to zero or ffill")
        if params.missing == "zero":
            values = np.nan_to_num(values, nan=0.0)
        else:
            from seqtrain.data.files import forward_fill

            values = forward_fill(values[None])[0]  # the table is one long sequence
    return values[:, :-1], values[:, -1]


def _sort_key(text: str):
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _windows(features: np.ndarray, target: np.ndarray, length: int, horizon: int) -> Split:
    import numpy as np

    count = len(features) - length - horizon + 1
    x = np.stack([features[i:i + length] for i in range(count)]).astype(np.float32)
    y = np.stack([target[i + length:i + length + horizon] for i in range(count)])
    return Split(x, y.astype(np.float32), None)


@register_task("csv_series", CsvSeriesParams)
def csv_series(params: CsvSeriesParams, seed: int, normalization: dict | None = None) -> Dataset:
    """Read, split chronologically, normalise and window the series (see the module)."""
    import numpy as np

    features, target = read_table(params)
    bounds = np.cumsum([round(len(features) * f) for f in (params.split.train, params.split.val)])
    parts = np.split(np.arange(len(features)), bounds)
    needed = params.sequence_length + params.horizon
    for name, rows in zip(("train", "val", "test"), parts, strict=True):
        if len(rows) < needed:
            raise DataError(
                f"{params.path}: the {name} part has {len(rows)} rows but a window needs "
                f"{needed} (sequence_length {params.sequence_length} + horizon "
                f"{params.horizon}); use more rows, a shorter window or other split fractions")
    if normalization is None:
        train_rows = features[parts[0]]
        std = train_rows.std(axis=0)
        normalization = {"columns": list(params.columns), "mean": train_rows.mean(axis=0).tolist(),
                         "std": np.where(std > 0, std, 1.0).tolist()}
    scaled = (features - np.array(normalization["mean"])) / np.array(normalization["std"])
    train, val, test = (_windows(scaled[rows], target[rows], params.sequence_length,
                                 params.horizon) for rows in parts)
    spec = TaskSpec(timesteps=params.sequence_length, features=len(params.columns),
                    per_step=False, kind="regression", output_dim=params.horizon)
    if params.target in params.columns:
        column = params.columns.index(params.target)
        last = test.x[:, -1, column] * normalization["std"][column] + normalization["mean"][column]
        baseline = regression_baseline("persistence: the last value again", last[:, None], test)
    else:
        baseline = regression_baseline("the training mean", float(target[parts[0]].mean()), test)
    return Dataset(spec=spec, train=train, val=val, test=test, baseline=baseline,
                   normalization=normalization)


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


@register_task("csv_sequences", CsvSequencesParams)
def csv_sequences(params: CsvSequencesParams, seed: int) -> Dataset:
    """Group rows by id into variable-length sequences, right-padded and masked.

    Sequences are shuffled with the seed and cut by `split`; padding is skipped by the
    `Masking` layer and weighs nothing in the loss, as for `npz` with `lengths`.
    """
    import numpy as np

    from seqtrain.data.files import baseline_for, prepare_split, shuffled_split

    path = Path(params.path)
    rows = _rows(path, [params.id_column, *params.columns, params.target]
                 + ([params.order_column] if params.order_column else []))
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row[params.id_column], []).append(row)
    if params.order_column:
        for members in groups.values():
            members.sort(key=lambda row: _sort_key(row[params.order_column]))
    longest = max(len(members) for members in groups.values())
    x = np.zeros((len(groups), longest, len(params.columns)), dtype=np.float64)
    targets = np.zeros((len(groups), longest), dtype=np.float64)
    lengths = np.array([len(members) for members in groups.values()])
    for n, members in enumerate(groups.values()):
        for t, row in enumerate(members):
            x[n, t] = [_number(row, c, path, missing_ok=True) for c in params.columns]
            targets[n, t] = _number(row, params.target, path)
    kind = params.kind
    whole_numbers = np.all(targets == np.round(targets))
    if kind == "auto":
        kind = "classification" if whole_numbers else "regression"
    if params.targets == "per_sequence":
        targets = targets[np.arange(len(groups)), lengths - 1]
    y = targets.astype(np.int64) if kind == "classification" else targets
    whole = prepare_split(params, kind, 0, "columns", params.target, x, y, lengths)
    train, val, test = shuffled_split(params, whole, seed)
    per_step = params.targets == "per_step"
    spec = TaskSpec(
        timesteps=longest, features=len(params.columns), per_step=per_step, kind=kind,
        num_classes=int(y.max()) + 1 if kind == "classification" else 0,
        output_dim=0 if kind == "classification" else 1, masked=True,
    )
    return Dataset(spec=spec, train=train, val=val, test=test,
                   baseline=baseline_for(kind, spec, train, test))


def _rows(path: Path, needed: list[str]) -> list[dict]:
    if not path.is_file():
        raise DataError(f"data.path: {path} does not exist (relative paths start at the "
                        "config file's folder)")
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path} is not a readable CSV file ({err})") from None
    header = list(rows[0]) if rows else []
    for column in needed:
        if column not in header:
            raise DataError(f"{path} has no column {column!r}; it has: {', '.join(header)}")
    return rows


def _number(row: dict, column: str, path: Path, missing_ok: bool = False) -> float:
    text = (row[column] or "").strip()
    if not text:
        if missing_ok:
            return float("nan")
        raise DataError(f"{path}: an empty {column!r} cell; targets cannot be missing")
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}, column {column!r}: {text!r} is not a number") from None
