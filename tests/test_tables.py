"""Time series from CSV files: chronological splits, training-only normalisation, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seqtrain.config import load_config
from seqtrain.data import build_dataset
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
    assert result.exit_code == 2 and "line 4, column 'a' is empty or NaN" in result.stderr
    assert not (tmp_path / "runs").exists()
