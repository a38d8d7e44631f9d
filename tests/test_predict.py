"""`seqtrain predict` and `eval INPUT`: real runs, real files, the run's preprocessing applied."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from seqtrain.config import load_config
from seqtrain.data import build_dataset
from seqtrain.rundir import RunDir, stored_preprocessing
from tests.conftest import NPZ, invoke, series_csv, write_config


def predict_json(*args) -> dict:
    result = invoke("predict", *args, "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("which", ["npz_run", "series_run"])
def test_metrics_from_predict_split_test_equal_evals(which, request, tmp_path):
    run = request.getfixturevalue(which)
    report = predict_json(run, "--split", "test", "-o", tmp_path / "test.npz")
    evaluated = json.loads(invoke("eval", run, "--json", "--quiet").stdout)["metrics"]
    assert report["metrics"].keys() == evaluated.keys()
    for name, value in evaluated.items():
        assert report["metrics"][name] == pytest.approx(value, rel=1e-5), name
    arrays = np.load(tmp_path / "test.npz")
    assert "true" in arrays and len(arrays["true"]) == report["num_samples"]


def test_file_predictions_equal_model_predict_on_the_arrays_seqtrain_builds(npz_run, tmp_path):
    import keras

    predict_json(npz_run, NPZ, "-o", tmp_path / "all.npz")
    found = np.load(tmp_path / "all.npz")
    config = load_config(npz_run / "config.yaml")
    dataset = build_dataset(config.data, config.seed, False,
                            stored_preprocessing(RunDir(npz_run), "npz"))
    model = keras.saving.load_model(npz_run / "checkpoints" / "best.keras", safe_mode=True)
    expected = model.predict(dataset.test.x, verbose=0)
    # The split's keys are the sequences' places in the file, which predict keeps in order.
    np.testing.assert_array_equal(found["sequence"], np.arange(len(found["sequence"])))
    np.testing.assert_allclose(found["probabilities"][dataset.test.keys], expected, atol=1e-6)
    assert found["predicted"].shape == (2000,) and found["probabilities"].shape == (2000, 2)


def test_a_series_forecasts_from_every_origin_the_last_beyond_the_data(series_run):
    csv_path = series_run.parent / "load.csv"
    result = invoke("predict", series_run, csv_path)  # CSV on stdout, a line on stderr
    assert result.exit_code == 0, result.stderr
    rows = read_csv(result.stdout)
    assert list(rows[0]) == ["time", "load_t+1", "load_t+2", "load_t+3"]
    assert len(rows) == 360 - 12 + 1
    assert rows[-1]["time"] == "2026-03-15T23:00"  # the last hour: a forecast past the end
    assert "predicted 349 sequences" in result.stderr
    # The test split's origins get the same forecasts from the whole file.
    split = read_csv(invoke("predict", series_run, "--split", "test", "--quiet").stdout)
    by_time = {row["time"]: row for row in rows}
    for row in split:
        for h in (1, 2, 3):
            assert float(row[f"load_t+{h}"]) == pytest.approx(
                float(by_time[row["time"]][f"load_t+{h}"]), rel=1e-6)
    # Forecasts are in the target's units, around the series' level, not around 0.
    assert 180 < float(rows[-1]["load_t+1"]) < 220


def test_regression_metrics_and_baseline_are_in_the_targets_units(series_run):
    summary = json.loads((series_run / "summary.json").read_text())
    rows = read_csv(invoke("predict", series_run, "--split", "test", "--quiet").stdout)
    errors = [float(r[f"load_t+{h}"]) - float(r[f"true_load_t+{h}"]) for r in rows
              for h in (1, 2, 3)]
    assert summary["test"]["mse"] == pytest.approx(np.mean(np.square(errors)), rel=1e-4)
    assert summary["test"]["mae"] == pytest.approx(np.mean(np.abs(errors)), rel=1e-4)
    baseline = summary["baseline"]
    assert baseline["description"].startswith("persistence")
    assert {"loss", "mse", "mae"} <= baseline.keys() and baseline["mse"] > baseline["loss"]
    preprocessing = json.loads((series_run / "preprocessing.json").read_text())
    assert preprocessing["output"]["add_level"] == "load"
    assert preprocessing["input"]["normalization"] == "window"


def test_every_output_format_holds_the_same_predictions(series_run, tmp_path):
    for name in ("p.csv", "p.jsonl", "p.npz"):
        assert invoke("predict", series_run, "--split", "val", "-o", tmp_path / name,
                      "--quiet").stdout.strip() == str(tmp_path / name)
    table = read_csv((tmp_path / "p.csv").read_text())
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    arrays = np.load(tmp_path / "p.npz")
    assert len(table) == len(lines) == len(arrays["prediction"])
    assert lines[0]["time"] == table[0]["time"] == str(arrays["time"][0])
    np.testing.assert_allclose([row["load_t+2"] for row in lines], arrays["prediction"][:, 1],
                               rtol=1e-6)
    np.testing.assert_allclose([float(row["true_load_t+1"]) for row in table],
                               arrays["true"][:, 0], rtol=1e-6)


def test_eval_scores_every_window_of_a_new_file(series_run, tmp_path):
    series_csv(tmp_path / "later.csv", rows=100)
    result = json.loads(invoke("eval", series_run, tmp_path / "later.csv", "--json",
                               "--quiet").stdout)
    assert result["num_samples"] == 100 - 12 - 3 + 1 and result["split"] == "input"
    assert result["file"].startswith("eval-") and (series_run / result["file"]).is_file()
    assert result["input"]["sha256"] and set(result["metrics"]) == {"loss", "mae", "mse"}
    result = invoke("eval", series_run, tmp_path / "later.csv", "--set", "data.horizon=2")
    assert result.exit_code == 2 and "not both" in result.stderr
    result = invoke("eval", series_run, "--set", "data.normalization=standard")
    assert result.exit_code == 2 and "trained on the run's own normalization" in result.stderr
    (tmp_path / "unlabelled.csv").write_text("time,temperature\n2026-01-01T00:00,1.0\n")
    result = invoke("eval", series_run, tmp_path / "unlabelled.csv")
    assert result.exit_code == 2 and "`seqtrain predict` takes files without them" in \
        result.stderr


def bad_series(folder: Path) -> dict[str, Path]:
    good = series_csv(folder / "good.csv", rows=40).read_text().splitlines()
    files = {
        "no temperature": [line.rsplit(",", 1)[0] for line in good],
        "not a number": good[:4] + [good[4].replace(good[4].split(",")[1], "n/a")] + good[5:],
        "too short": good[:4],
        "an empty cell": good[:6] + [good[6].replace(good[6].split(",")[2], "")] + good[7:],
        "an infinite cell": good[:8] + [good[8].replace(good[8].split(",")[1], "inf")]
        + good[9:],
    }
    for name, lines in files.items():
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return {name: folder / f"{name}.csv" for name in files}


SERIES_PROBLEMS = [
    ("no temperature", ["has no column 'temperature'"]),
    ("not a number", ["line 5, column 'load'", "'n/a' is not a number"]),
    ("too short", ["has 3 rows; a window needs 12"]),
    ("an empty cell", ["line 7, column 'temperature' is empty", "data.missing"]),
    ("an infinite cell", ["line 9, column 'load'", "'inf' is not a finite number"]),
]


@pytest.mark.parametrize("case,words", SERIES_PROBLEMS, ids=[c[0] for c in SERIES_PROBLEMS])
def test_a_csv_that_does_not_fit_the_run_is_exit_2_naming_the_line_and_column(
        case, words, series_run, tmp_path):
    path = bad_series(tmp_path)[case]
    result = invoke("predict", series_run, path, "-o", tmp_path / "out.csv")
    assert result.exit_code == 2, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert str(path) in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_arrays_that_do_not_fit_the_run_are_exit_2_naming_the_array(npz_run, tmp_path):
    rng = np.random.default_rng(0)
    cases = {
        "renamed.npz": ({"inputs": rng.normal(size=(3, 5, 2))}, "has no array 'x'"),
        "features.npz": ({"x": rng.normal(size=(3, 5, 3))}, "reads (N, T, 2) numbers"),
        "tokens.npz": ({"x": rng.integers(0, 4, (3, 5))}, "reads (N, T, 2) numbers"),
        "lengths.npz": ({"x": rng.normal(size=(3, 5, 2)), "lengths": np.array([1, 9, 2])},
                        "lengths must be 3 integers in [1, 5]"),
        "no_lengths.npz": ({"x": rng.normal(size=(3, 5, 2)), "lengths": np.array([])},
                           "lengths must be 3 integers in [1, 5]"),
        "infinite.npz": ({"x": np.full((3, 5, 2), np.inf)}, "has an infinite value"),
    }
    for name, (arrays, words) in cases.items():
        np.savez(tmp_path / name, **arrays)
        result = invoke("predict", npz_run, tmp_path / name, "-o", tmp_path / "out.npz")
        assert result.exit_code == 2 and words in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.stderr and not (tmp_path / "out.npz").exists()
    # Missing values follow the run's policy (ffill here), and lengths are optional.
    x = rng.normal(size=(3, 5, 2))
    x[1, 2, 0] = np.nan
    np.savez(tmp_path / "ok.npz", x=x)
    result = invoke("predict", npz_run, tmp_path / "ok.npz", "--json", "--quiet")
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # JSON lines
    assert [line["sequence"] for line in lines] == [0, 1, 2] and "prob_1" in lines[0]


@pytest.mark.parametrize("args,words", [
    ((), "give INPUT (a file of new inputs) or a split"),
    (("--split", "test", "INPUT"), "not both"),
    (("--split", "test", "--batch-size", "0"), "--batch-size got 0"),
    (("--split", "test", "-o", "RUN/metrics.csv"), "inside the run directory"),
    (("--split", "test", "-o", "no/such/folder/p.csv"), "does not exist"),
    (("--split", "test", "-o", "TMP"), "is a folder"),
    (("--split", "holdout"), "expected train, val or test"),
    (("missing.npz",), "missing.npz does not exist"),
    (("--split", "test", "-o", "out.parquet"), "write .csv, .jsonl or .npz"),
    (("--split", "test", "--checkpoint", "final"), "expected best or last"),
    (("--split", "test", "--device", "tpu"), "expected auto, cpu"),
])
def test_bad_flags_are_exit_2_and_write_nothing(args, words, npz_run, tmp_path):
    names = {"INPUT": str(NPZ), "RUN/metrics.csv": str(npz_run / "metrics.csv"),
             "TMP": str(tmp_path)}
    before = (npz_run / "metrics.csv").read_bytes()
    result = invoke("predict", npz_run, *[names.get(a, a) for a in args])
    assert result.exit_code == 2 and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (Path.cwd() / "out.parquet").exists()
    assert (npz_run / "metrics.csv").read_bytes() == before and not list(tmp_path.iterdir())


def test_digits_predict_from_their_raw_form_and_an_unrolled_model_keeps_its_length(tmp_path):
    config = write_config(tmp_path, {
        "name": "digits", "seed": 1, "device": "cpu",
        "data": {"task": "shifted_digit", "sequence_length": 6, "shift": 1, "num_classes": 4,
                 "num_samples": 200},
        "model": {"cell": "simple_rnn", "units": 8, "unroll": True},
        "train": {"epochs": 1, "batch_size": 32}})
    assert invoke("run", config, "--run-dir", tmp_path / "run", "--quiet").exit_code == 0
    digits = np.random.default_rng(0).integers(0, 4, (5, 6))
    np.savez(tmp_path / "digits.npz", x=digits)
    rows = read_csv(invoke("predict", tmp_path / "run", tmp_path / "digits.npz").stdout)
    assert len(rows) == 5 * 6 and list(rows[0])[:3] == ["sequence", "step", "predicted"]
    assert list(rows[0])[3:] == ["prob_0", "prob_1", "prob_2", "prob_3"]
    np.savez(tmp_path / "long.npz", x=np.zeros((2, 9), np.int64))
    result = invoke("predict", tmp_path / "run", tmp_path / "long.npz")
    assert result.exit_code == 2 and "unrolled" in result.stderr and "reads exactly 6" in \
        result.stderr
    np.savez(tmp_path / "five.npz", x=np.full((2, 6), 5))
    result = invoke("predict", tmp_path / "run", tmp_path / "five.npz")
    assert result.exit_code == 2 and "holds 5 at (0, 0)" in result.stderr
    # eval scores the file against the targets the task derives from the digits.
    result = json.loads(invoke("eval", tmp_path / "run", tmp_path / "digits.npz", "--json",
                               "--quiet").stdout)
    assert result["num_samples"] == 5 and 0.0 <= result["metrics"]["accuracy"] <= 1.0


def test_a_run_from_before_preprocessing_json_still_predicts(npz_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(npz_run, old)
    (old / "preprocessing.json").unlink()
    before = predict_json(npz_run, "--split", "test", "-o", tmp_path / "before.npz")
    after = predict_json(old, "--split", "test", "-o", tmp_path / "after.npz")
    assert after["metrics"] == pytest.approx(before["metrics"], rel=1e-6)
