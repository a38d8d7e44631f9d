"""The Python API: `seqtrain.train` and `seqtrain.load`, the same code paths as the CLI."""

from __future__ import annotations

import copy
import csv
import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import seqtrain
from seqtrain.errors import ConfigError, DataError
from tests.conftest import ROOT, TINY, invoke


def test_importing_the_api_starts_no_tensorflow():
    script = textwrap.dedent("""
        import sys
        import seqtrain
        seqtrain.load, seqtrain.train
        from seqtrain.errors import RunDirError
        try:
            seqtrain.load("no/such/run")
        except RunDirError as err:
            print("refused:", err)
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.splitlines()[-1] == "[]", out.stdout + out.stderr
    assert "run directory no/such/run does not exist" in out.stdout


def test_train_from_a_dict_then_predict_from_arrays_as_the_cli_does(tmp_path):
    import keras

    given = copy.deepcopy(TINY)
    run_dir = seqtrain.train(given, overrides=["train.epochs=1"], runs_dir=tmp_path)
    assert given == TINY  # the caller's dict is left as it was
    assert run_dir.parent == tmp_path and (run_dir / "checkpoints" / "best.keras").is_file()
    trained = seqtrain.load(run_dir)
    assert trained.config.name == "tiny" and trained.summary["status"] == "completed"
    assert isinstance(trained.model, keras.Sequential)
    digits = np.random.default_rng(0).integers(0, 4, (3, 6))
    predictions = trained.predict(digits)
    arrays = predictions.arrays()
    assert arrays["probabilities"].shape == (3, 6, 4) and arrays["predicted"].shape == (3, 6)
    np.savez(tmp_path / "digits.npz", x=digits)
    cli = list(csv.reader(io.StringIO(invoke("predict", run_dir, tmp_path / "digits.npz",
                                             "--quiet").stdout)))
    assert cli[0] == predictions.columns()
    assert [float(v) for v in cli[1][3:]] == pytest.approx(arrays["probabilities"][0, 0],
                                                           rel=1e-6)
    with pytest.raises(ConfigError, match="model.units"):
        seqtrain.train({**TINY, "model": {"units": -1}}, runs_dir=tmp_path)


def test_rows_and_columns_predict_like_the_file_they_would_be(series_run):
    trained = seqtrain.load(series_run)
    source = series_run.parent / "load.csv"
    from_file = trained.predict(source)
    with open(source, newline="") as file:
        rows = list(csv.DictReader(file))
    from_rows = trained.predict(rows)
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    from_columns = trained.predict(columns)
    np.testing.assert_array_equal(from_rows.values(), from_file.values())
    np.testing.assert_array_equal(from_columns.values(), from_file.values())
    assert next(iter(from_rows.rows()))[0] == rows[11]["time"]  # keyed by the origin's date
    with pytest.raises(DataError, match="no column 'temperature'"):
        trained.predict([{"time": "2026-01-01T00:00", "load": 1.0}])
