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
    if not path.is_file():
        raise DataError(f"data.path: {path} does not exist (relative paths start at the "
                        "config file's folder)")
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path} is not a readable CSV file ({err})") from None
    header = list(rows[0]) if rows else []
    for column in [*params.columns, params.target] + ([params.date_column]
                                                       if params.date_column else []):
        if column not in header:
            raise DataError(f"{path} has no column {column!r}; it has: {', '.join(header)}")
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
            for row in range(len(values)):
                gap = np.isnan(values[row])
                values[row][gap] = values[row - 1][gap] if row else 0.0
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
