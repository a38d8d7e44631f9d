"""Reading the user's CSV and text files: cells as text, each with its line in the file.

Every message names the file, the line (as an editor counts it) and the column, so that a
bad cell is found at once. No NumPy, no TensorFlow: the tasks parse the cells.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from seqtrain.errors import DataError


def finite(text: str, path: Path, line: int, column: str, where: str = "") -> float:
    """A cell's number, or a DataError naming its line and column (NaN passes: missing).

    `where` adds to the column's name, e.g. " (sequence 'a', step 3)".
    """
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}, line {line}, column {column!r}{where}: {text!r} is not a "
                        "number") from None
    if math.isinf(value):
        raise DataError(f"{path}, line {line}, column {column!r}{where}: {text!r} is not a "
                        "finite number")
    return value


def read_rows(path: Path, needed: list[str]) -> list[tuple[int, dict[str, str]]]:
    """The data rows of a CSV file as text, each with its line in the file (header = 1).

    Lines count as an editor counts them: blank lines and cells quoted over several lines
    included, so a message's line is the one the user sees.

    Raises:
        DataError: The file is missing or unreadable, a `needed` column is missing from the
            header or named twice there, or a row's cells do not match the header.
    """
    if not path.is_file():
        raise DataError(f"data.path: {path} does not exist (relative paths start at the "
                        "config file's folder)")
    rows: list[tuple[int, dict[str, str]]] = []
    header: list[str] | None = None
    text = read_text(path)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        end = 0  # the line the previous record ended on
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line
            if header is None:
                header = _header(record, start, path, needed)
                continue
            rows.append((start, _cells(record, header, start, path)))
    except csv.Error as err:
        raise DataError(f"{path}, line {reader.line_num} is not readable CSV ({err})") from None
    if header is None:
        raise DataError(f"{path} is empty; expected a header row naming the columns, then the "
                        "data rows")
    if not rows:
        raise DataError(f"{path} has no data rows; expected a header row and at least one row")
    return rows


def read_text(path: Path) -> str:
    """A text file's content, decoded as UTF-8 (a byte-order mark, as Excel writes, dropped).

    Raises:
        DataError: The file cannot be read, or is not UTF-8: the message names the line
            and the first byte that is not.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path} cannot be read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(f"{path}, line {line} is not UTF-8 text (byte {data[err.start]:#04x} "
                        f"at byte {column} of the line); save the file as UTF-8") from None


def _header(record: list[str], line: int, path: Path, needed: list[str]) -> list[str]:
    """The column names of a header record, each `needed` one present exactly once."""
    import difflib

    names = [name.strip() for name in record]
    for column in dict.fromkeys(needed):
        if names.count(column) > 1:
            raise DataError(f"{path}, line {line}: the header names column {column!r} "
                            f"{names.count(column)} times; rename all but one")
        if column not in names:
            message = f"{path} has no column {column!r}; its header (line {line}) has: " + (
                ", ".join(names))
            close = difflib.get_close_matches(column, names, n=1)
            if close:
                message += f". Did you mean {close[0]!r}?"
            raise DataError(message)
    return names


def _cells(record: list[str], header: list[str], line: int, path: Path) -> dict[str, str]:
    """A data record as {column: text}; its cells must match the header's columns."""
    if len(record) > len(header) and not any(cell.strip() for cell in record[len(header):]):
        record = record[:len(header)]  # trailing empty cells, as spreadsheets may write
    if len(record) != len(header):
        fix = ("quote cells that hold a comma" if len(record) > len(header) else
               "give every column a cell, empty where a value is missing")
        raise DataError(f"{path}, line {line} has {len(record)} cells but the header has "
                        f"{len(header)} columns; {fix}")
    return dict(zip(header, record, strict=True))
