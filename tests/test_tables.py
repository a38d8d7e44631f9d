"""Time series from CSV files: chronological splits, training-only normalisation, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seqtrain.config import load_config
from seqtrain.data import build_dataset
from seqtrain.errors import DataError
from tests.conftest import invoke, write_config


def series_csv(folder: Path, rows: int = 120, shuffled: bool = True, blank: bool = False) -> Path:
    t = np.arange(rows)
    temp = np.sin(t / 5.0) * 10 + 20
    pressure = np.cos(t / 7.0) + 1000
    order = np.random.default_rng(0).permutation(rows) if shuffled else t
    lines = ["day,temp,pressure,label"]
    for i in order:
        value = "" if blank and i == 50 else f"{temp[i]:.6f}"
        lines.append(f"{i},{value},{pressure[i]:.6f},x")
    path = folder / "weather.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def config_for(folder: Path, **data) -> Path:
    return write_config(folder, {
        "name": "csv", "seed": 1, "device": "cpu",
        "data": {"task": "csv_series", "path": "weather.csv", "columns": ["temp", "pressure"],
                 "target": "temp", "sequence_length": 8, "horizon": 2, "date_column": "day",
                 "split": {"train": 0.6, "val": 0.2, "test": 0.2}, **data},
        "model": {"cell": "gru", "units": 8}, "train": {"epochs": 2, "batch_size": 16}})


def test_rows_are_sorted_split_in_time_and_windowed_inside_each_part(tmp_path):
    series_csv(tmp_path)
    data = build_dataset(load_config(config_for(tmp_path)).data, seed=1)
    assert data.train.x.shape == (72 - 9, 8, 2) and data.train.y.shape == (63, 2)
    t = np.arange(120)
    temp = np.sin(t / 5.0) * 10 + 20
    np.testing.assert_allclose(data.train.y[0], temp[8:10], atol=1e-5)  # sorted by day
    np.testing.assert_allclose(data.test.y[-1], temp[118:120], atol=1e-5)
    assert len(data.val) == 24 - 9 and len(data.test) == 24 - 9  # no window spans a boundary
    train_rows = np.stack([temp[:72], (np.cos(t / 7.0) + 1000)[:72]], axis=1)
    inputs = data.preprocessing["input"]
    assert inputs["normalization"] == "standard"
    assert inputs["mean"] == pytest.approx(train_rows.mean(axis=0).tolist())
    # The target is standardised inside the model with the training windows' statistics.
    assert data.spec.output_offset == pytest.approx([data.train.y[:, h].mean() for h in (0, 1)])
    assert data.baseline.description.startswith("persistence")


def test_the_run_stores_its_statistics_and_eval_reuses_them(tmp_path):
    path = series_csv(tmp_path)
    config = config_for(tmp_path)
    result = invoke("run", config, "--run-dir", tmp_path / "run", "--quiet", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    stored = json.loads((tmp_path / "run" / "preprocessing.json").read_text())["input"]
    assert stored["columns"] == ["temp", "pressure"] and len(stored["std"]) == 2
    first = json.loads(invoke("eval", tmp_path / "run", "--json").stdout)
    assert first["metrics"] == summary["test"]
    # The file's training part changes: eval warns, and still normalises as in training.
    text = path.read_text().splitlines()
    text[1] = text[1].replace(text[1].split(",")[2], "999.0")
    path.write_text("\n".join(text) + "\n")
    again = invoke("eval", tmp_path / "run", "--json")
    assert "weather.csv changed since training" in again.stderr


def test_missing_cells_follow_the_policy(tmp_path):
    series_csv(tmp_path, blank=True)
    for policy in ("zero", "ffill"):
        data = build_dataset(load_config(config_for(tmp_path, missing=policy)).data, seed=1)
        assert not np.isnan(data.train.x).any()
    result = invoke("run", config_for(tmp_path), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "column 'temp' is empty or NaN" in result.stderr


@pytest.mark.parametrize("change,words", [
    ({"columns": ["temp", "humidity"]}, "no column 'humidity'"),
    ({"target": "label"}, "'x' is not a number"),
    ({"sequence_length": 30}, "the val part has 24 rows but a window needs 32"),
    ({"path": "other.csv"}, "other.csv does not exist"),
    ({"date_column": "when"}, "no column 'when'"),
])
def test_broken_tables_are_exit_2_naming_the_file_and_column(change, words, tmp_path):
    series_csv(tmp_path)
    result = invoke("run", config_for(tmp_path, **change), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def sequences_csv(folder: Path) -> Path:
    """Sensor readings of 40 machines, 3 to 12 rows each (shuffled), labelled per machine."""
    rng = np.random.default_rng(5)
    lines = ["machine,t,a,b,faulty"]
    rows = []
    for machine in range(40):
        length = int(rng.integers(3, 13))
        faulty = machine % 2
        for t in range(length):
            a = rng.normal() + (2.0 if faulty and t == length - 1 else 0.0)
            rows.append(f"m{machine},{t},{a:.5f},{rng.normal():.5f},{faulty}")
    rng.shuffle(rows)
    (folder / "machines.csv").write_text("\n".join(lines + rows) + "\n")
    return folder / "machines.csv"


def test_ragged_sequences_grouped_by_id_are_padded_masked_and_ordered(tmp_path):
    sequences_csv(tmp_path)
    config = write_config(tmp_path, {
        "name": "ragged", "seed": 1, "device": "cpu",
        "data": {"task": "csv_sequences", "path": "machines.csv", "id_column": "machine",
                 "order_column": "t", "columns": ["a", "b"], "target": "faulty",
                 "split": {"train": 0.5, "val": 0.25, "test": 0.25}},
        "model": {"cell": "lstm", "units": 8}, "train": {"epochs": 2, "batch_size": 8}})
    data = build_dataset(load_config(config).data, seed=1)
    assert data.spec.masked and data.spec.kind == "classification" and not data.spec.per_step
    assert data.train.x.shape == (20, 12, 2) and len(data.val) == len(data.test) == 10
    assert sorted(np.concatenate([data.train.y, data.val.y, data.test.y]).tolist()) == \
        [0] * 20 + [1] * 20
    result = invoke("run", config, "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    bad = write_config(tmp_path, {"name": "x", "data": {
        "task": "csv_sequences", "path": "machines.csv", "id_column": "serial",
        "columns": ["a"], "target": "faulty"}}, name="bad.yaml")
    result = invoke("run", bad, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "no column 'serial'" in result.stderr


def test_the_shipped_series_example_beats_persistence_twice_over_with_window_normalization(
        tmp_path):
    from tests.conftest import ROOT

    result = invoke("run", ROOT / "configs" / "csv_series_example.yaml", "--run-dir",
                    tmp_path / "run", "--quiet", "--json", "--set", "train.epochs=3",
                    "--set", "device=cpu")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["baseline"]["description"].startswith("persistence")
    assert summary["test"]["mse"] <= 0.5 * summary["baseline"]["mse"], summary["test"]
    assert summary["warnings"] == []  # a healthy run: no gradient warning


def test_window_normalization_makes_windows_relative_to_their_last_row(tmp_path):
    series_csv(tmp_path)
    data = build_dataset(load_config(config_for(tmp_path, normalization="window")).data, seed=1)
    t = np.arange(120)
    temp = np.sin(t / 5.0) * 10 + 20
    np.testing.assert_array_equal(data.train.x[:, -1], 0.0)  # the last row is the origin
    assert data.train.level[0] == pytest.approx(temp[7], abs=1e-5)
    np.testing.assert_allclose(data.train.y[0], temp[8:10] - temp[7], atol=1e-5)  # changes
    scale = data.preprocessing["input"]["scale"][0]
    assert scale == pytest.approx(np.diff(temp[:72]).std(), rel=1e-4)
    np.testing.assert_allclose(data.train.x[0, 0, 0], (temp[0] - temp[7]) / scale, rtol=1e-5)
    assert data.preprocessing["output"]["add_level"] == "temp"
    none = build_dataset(load_config(config_for(tmp_path, normalization="none")).data, seed=1)
    assert none.spec.output_scale == () and none.train.x[0, 0, 0] == pytest.approx(temp[0])


def test_spreadsheet_habits_are_read_and_bad_cells_are_named_by_line_and_column(tmp_path):
    path = series_csv(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # Excel's byte-order mark
    assert len(build_dataset(load_config(config_for(tmp_path)).data, seed=1).train) == 63
    sequences_csv(tmp_path)
    lines = (tmp_path / "machines.csv").read_text().splitlines()
    lines[3] = ",".join(cell if i != 2 else "" for i, cell in enumerate(lines[3].split(",")))
    (tmp_path / "machines.csv").write_text("\n".join(lines) + "\n")
    config = write_config(tmp_path, {
        "name": "ragged", "data": {"task": "csv_sequences", "path": "machines.csv",
                                   "id_column": "machine", "columns": ["a", "b"],
                                   "target": "faulty"}}, name="ragged.yaml")
    result = invoke("run", config, "--runs-dir", tmp_path / "runs")
    machine = lines[3].split(",")[0]
    assert result.exit_code == 2, result.stderr
    assert f"line 4, column 'a' (sequence '{machine}', step " in result.stderr
    assert "is empty or NaN; set data.missing to mask, zero or ffill" in result.stderr
    assert not (tmp_path / "runs").exists()


def _refused(config: Path, tmp_path: Path) -> str:
    """Run `config`; assert exit 2 without a traceback or a run; return the message."""
    result = invoke("run", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()
    return " ".join(result.stderr.split())  # rich wraps long lines


def _edit_lines(path: Path, edit) -> list[str]:
    """Rewrite the file's lines with `edit(lines)`; return them (line n is lines[n - 1])."""
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return lines


def _cell(line: str, column: int, text: str) -> str:
    cells = line.split(",")
    cells[column] = text
    return ",".join(cells)


# The series file is shuffled by day: its line 12 is a row from the middle of the sorted series.
SERIES_FILE_PROBLEMS = [
    ("a bad cell", lambda lines: lines.__setitem__(11, _cell(lines[11], 1, "abc")),
     "weather.csv, line 12, column 'temp': 'abc' is not a number"),
    ("a NaN cell", lambda lines: lines.__setitem__(11, _cell(lines[11], 2, "NaN")),
     "weather.csv, line 12, column 'pressure' is empty or NaN; set data.missing"),
    ("blank lines count", lambda lines: (lines.insert(1, ""), lines.insert(5, ""),
                                         lines.__setitem__(11, _cell(lines[11], 1, "abc"))),
     "weather.csv, line 12, column 'temp': 'abc' is not a number"),
    ("a cell quoted over two lines counts two",
     lambda lines: (lines.__setitem__(2, _cell(lines[2], 3, '"two\nlines"')),
                    lines.__setitem__(10, _cell(lines[10], 1, "abc"))),
     "weather.csv, line 12, column 'temp': 'abc' is not a number"),
    ("a date given twice", lambda lines: lines.__setitem__(11, _cell(lines[11], 0,
                                                                      lines[4].split(",")[0])),
     "weather.csv, lines 5 and 12: column 'day' holds"),
    ("an empty date", lambda lines: lines.__setitem__(11, _cell(lines[11], 0, "")),
     "weather.csv, line 12, column 'day' is empty; every row needs a value there"),
    ("a NaN date", lambda lines: lines.__setitem__(11, _cell(lines[11], 0, "nan")),
     "weather.csv, line 12, column 'day': 'nan' is not a value to put the rows in order by"),
    ("dates that mix numbers and text", lambda lines: lines.__setitem__(
        11, _cell(lines[11], 0, "2024-01-31")), "column 'day' mixes numbers (line"),
    ("a row with a cell too many", lambda lines: lines.__setitem__(11, lines[11] + ",9"),
     "weather.csv, line 12 has 5 cells but the header has 4 columns; quote cells that hold"),
    ("a row with a cell too few", lambda lines: lines.__setitem__(11, "3,4.5"),
     "weather.csv, line 12 has 2 cells but the header has 4 columns; give every column a"),
    ("a column named twice", lambda lines: lines.__setitem__(0, "day,temp,temp,label"),
     "weather.csv, line 1: the header names column 'temp' 2 times"),
    ("a column misspelt", lambda lines: lines.__setitem__(0, "day,temps,pressure,label"),
     "has no column 'temp'; its header (line 1) has: day, temps, pressure, label. Did you "
     "mean 'temps'?"),
]


@pytest.mark.parametrize("edit,words", [case[1:] for case in SERIES_FILE_PROBLEMS],
                         ids=[case[0] for case in SERIES_FILE_PROBLEMS])
def test_series_errors_name_the_line_of_the_file_not_the_sorted_row(edit, words, tmp_path):
    _edit_lines(series_csv(tmp_path), edit)
    message = _refused(config_for(tmp_path), tmp_path)
    assert words in message, message


def test_trailing_empty_cells_and_blank_lines_are_read_as_spreadsheets_write_them(tmp_path):
    path = series_csv(tmp_path)
    _edit_lines(path, lambda lines: (lines.__setitem__(3, lines[3] + ",,"), lines.append(""),
                                     lines.insert(7, "")))
    assert len(build_dataset(load_config(config_for(tmp_path)).data, seed=1).train) == 63


def machines_config(folder: Path, **data) -> Path:
    return write_config(folder, {
        "name": "ragged", "seed": 1, "device": "cpu",
        "data": {"task": "csv_sequences", "path": "machines.csv", "id_column": "machine",
                 "order_column": "t", "columns": ["a", "b"], "target": "faulty", **data},
        "model": {"cell": "lstm", "units": 8}, "train": {"epochs": 1}}, name="ragged.yaml")


def _step_of(lines: list[str], number: int) -> tuple[str, int, int]:
    """(machine, step, length) of the file's line `number`, steps ordered by `t`, from 1."""
    machine, t = lines[number - 1].split(",")[:2]
    times = sorted(int(line.split(",")[1]) for line in lines[1:]
                   if line.split(",")[0] == machine)
    return machine, times.index(int(t)) + 1, len(times)


def _last_line(lines: list[str], machine: str) -> int:
    """The file's line of `machine`'s last step (the largest `t`)."""
    return max((int(line.split(",")[1]), number) for number, line in enumerate(lines, 1)
               if number > 1 and line.split(",")[0] == machine)[1]


SEQUENCE_FILE_PROBLEMS = [
    ("a missing feature", 3, "", "column 'b' ({where}) is empty or NaN; set data.missing to "
     "mask, zero or ffill"),
    ("a NaN feature", 2, "nan", "column 'a' ({where}) is empty or NaN"),
    ("a bad feature", 3, "x1", "column 'b' ({where}): 'x1' is not a number"),
    ("a missing target", 4, "", "column 'faulty' ({where}) is empty or NaN; targets cannot be "
     "missing"),
    ("a NaN target", 4, "NaN", "column 'faulty' ({where}) is empty or NaN; targets cannot be "
     "missing"),
    ("an empty id", 0, "", "column 'machine' is empty; every row needs the id"),
]


def test_an_id_with_spaces_around_it_is_the_same_sequence(tmp_path):
    from seqtrain.data.tables import group_sequences

    path = sequences_csv(tmp_path)
    params = load_config(machines_config(tmp_path)).data
    plain = group_sequences(params, path, with_target=True)
    _edit_lines(path, lambda lines: lines.__setitem__(56, " " + lines[56]))
    spaced = group_sequences(params, path, with_target=True)
    assert list(spaced.ids) == list(plain.ids)
    assert (spaced.lengths == plain.lengths).all()


@pytest.mark.parametrize("column,text,words", [case[1:] for case in SEQUENCE_FILE_PROBLEMS],
                         ids=[case[0] for case in SEQUENCE_FILE_PROBLEMS])
def test_sequence_errors_name_the_line_column_and_sequence_id(column, text, words, tmp_path):
    path = sequences_csv(tmp_path)
    lines = _edit_lines(path, lambda lines: lines.__setitem__(56, _cell(lines[56], column,
                                                                        text)))
    message = _refused(machines_config(tmp_path), tmp_path)
    if column:
        machine, step, length = _step_of(lines, 57)
        words = words.format(where=f"sequence '{machine}', step {step} of {length}")
    assert f"machines.csv, line 57, {words}" in message, message
    assert "array" not in message


def test_sequence_targets_that_are_no_class_and_repeated_order_values_are_named(tmp_path):
    path = sequences_csv(tmp_path)
    lines = path.read_text().splitlines()
    machine, _, length = _step_of(lines, 20)
    last = _last_line(lines, machine)
    _edit_lines(path, lambda lines: lines.__setitem__(last - 1, _cell(lines[last - 1], 4, "-1")))
    message = _refused(machines_config(tmp_path, kind="classification"), tmp_path)
    assert (f"machines.csv, line {last}, column 'faulty' (sequence '{machine}', step {length} of "
            f"{length}): -1 is not a class; classification targets are whole numbers") in message
    sequences_csv(tmp_path)
    twice = next(number for number, line in enumerate(lines, 1)
                 if number not in (1, 20) and line.split(",")[0] == machine)
    _edit_lines(path, lambda lines: lines.__setitem__(
        twice - 1, _cell(lines[twice - 1], 1, lines[19].split(",")[1])))
    message = _refused(machines_config(tmp_path), tmp_path)
    first, second = sorted((20, twice))
    assert (f"machines.csv, lines {first} and {second}: column 't' holds "
            f"'{lines[19].split(',')[1]}' twice in sequence '{machine}'") in message


def test_new_sequences_with_a_class_the_run_never_saw_are_named_by_line(tmp_path):
    from seqtrain.data.registry import read_inputs

    path = sequences_csv(tmp_path)
    lines = path.read_text().splitlines()
    machine, _, length = _step_of(lines, 9)
    last = _last_line(lines, machine)
    _edit_lines(path, lambda lines: lines.__setitem__(last - 1, _cell(lines[last - 1], 4, "7")))
    params = load_config(machines_config(tmp_path)).data
    stored = {"input": {}, "output": {"kind": "classification", "classes": ["0", "1"],
                                      "per_step": False}}
    with pytest.raises(DataError) as caught:
        read_inputs(params, path, stored, targets=True)
    assert (f"machines.csv, line {last}, column 'faulty' (sequence '{machine}', step {length} "
            f"of {length}): 7 is not a class of this run; its classes are 0 to 1"
            ) in str(caught.value)
