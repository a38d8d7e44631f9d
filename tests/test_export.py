"""`seqtrain export`: a SavedModel (and ONNX) that serves without seqtrain or Keras."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from seqtrain import atomic
from tests.conftest import NPZ, invoke

# A client that knows only TensorFlow, NumPy and preprocessing.json: `import keras` and
# `import seqtrain` fail in it. It applies the JSON's steps by hand to the raw files.
SERVE = textwrap.dedent("""
    import csv, json, sys
    sys.modules["keras"] = None
    sys.modules["seqtrain"] = None
    import numpy as np
    import tensorflow as tf

    def serve(folder, x):
        prep = json.load(open(f"{folder}/preprocessing.json"))
        function = tf.saved_model.load(folder).signatures[prep["export"]["signature"]]
        name = prep["model_input"]["name"]
        (output,) = function(**{name: tf.constant(x, dtype=prep["model_input"]["dtype"])}).values()
        return prep, output.numpy()

    def npz_inputs(folder, path):
        prep = json.load(open(f"{folder}/preprocessing.json"))
        arrays = np.load(path)
        x = arrays[prep["input"]["x"]].astype(np.float32)
        assert prep["input"]["missing"] == "ffill"
        for t in range(x.shape[1]):  # carry each feature's last value forward
            gap = np.isnan(x[:, t])
            x[:, t][gap] = x[:, t - 1][gap] if t else 0.0
        steps = np.arange(x.shape[1])[None, :] < arrays[prep["input"]["lengths"]][:, None]
        x[~steps] = prep["model_input"]["padding_value"]
        return x

    def csv_inputs(folder, path):
        prep = json.load(open(f"{folder}/preprocessing.json"))["input"]
        rows = sorted(csv.DictReader(open(path)), key=lambda row: row[prep["date_column"]])
        table = np.array([[float(row[c]) for c in prep["columns"]] for row in rows])
        level = np.array([float(row[prep["target"]]) for row in rows])
        length = prep["sequence_length"]
        windows = np.stack([table[i - length + 1:i + 1] for i in range(length - 1, len(rows))])
        assert prep["normalization"] == "window"
        x = (windows - windows[:, -1:]) / np.array(prep["scale"])
        return x.astype(np.float32), level[length - 1:]

    folder_npz, npz_path, expected_npz, folder_csv, csv_path, expected_csv = sys.argv[1:]
    _, probabilities = serve(folder_npz, npz_inputs(folder_npz, npz_path))
    x, level = csv_inputs(folder_csv, csv_path)
    prep, change = serve(folder_csv, x)
    assert prep["output"]["add_level"] == "load"
    forecast = change + level[:, None]
    print(json.dumps({
        "npz": float(np.abs(probabilities - np.load(expected_npz)["probabilities"]).max()),
        "csv": float(np.abs(forecast - np.load(expected_csv)["prediction"]).max()
                     / np.abs(forecast).max()),
        "keras": sorted(m for m in sys.modules if m.startswith("keras") and sys.modules[m]),
        "seqtrain": "seqtrain" in sys.modules and sys.modules["seqtrain"] is not None}))
""")


def test_a_saved_model_serves_in_a_process_without_seqtrain_or_keras(npz_run, series_run,
                                                                      tmp_path):
    exported = {}
    for name, run in (("npz", npz_run), ("csv", series_run)):
        result = invoke("export", run, "-o", tmp_path / name, "--json", "--quiet")
        assert result.exit_code == 0, result.stderr
        exported[name] = json.loads(result.stdout)
        assert exported[name]["signature"] == "serving_default"
    assert list(exported["npz"]["inputs"]) == ["sequence"]
    assert exported["npz"]["inputs"]["sequence"]["shape"] == [None, None, 2]
    prep = json.loads((tmp_path / "csv" / "preprocessing.json").read_text())
    assert prep["export"]["format"] == "saved_model" and prep["steps"]
    csv_path = series_run.parent / "load.csv"
    assert invoke("predict", npz_run, NPZ, "-o", tmp_path / "npz.npz").exit_code == 0
    assert invoke("predict", series_run, csv_path, "-o", tmp_path / "csv.npz").exit_code == 0
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", SERVE, str(tmp_path / "npz"), str(NPZ), str(tmp_path / "npz.npz"),
         str(tmp_path / "csv"), str(csv_path), str(tmp_path / "csv.npz")],
        capture_output=True, text=True, cwd=tmp_path, env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["keras"] == [] and not found["seqtrain"]
    assert found["npz"] <= 1e-6 and found["csv"] <= 1e-6, found


def test_export_never_overwrites_and_refuses_unknown_formats(npz_run, tmp_path):
    (tmp_path / "taken").mkdir()
    result = invoke("export", npz_run, "-o", tmp_path / "taken")
    assert result.exit_code == 2 and "already exists" in result.stderr
    result = invoke("export", npz_run, "-o", tmp_path / "new", "--format", "tflite")
    assert result.exit_code == 2 and "expected saved_model or onnx" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is not None,
                    reason="the onnx extra is installed here")
def test_onnx_without_its_extra_says_how_to_install_it(npz_run, tmp_path):
    result = invoke("export", npz_run, "-o", tmp_path / "onnx", "--format", "onnx")
    assert result.exit_code == 2 and "pip install 'seqtrain[onnx]'" in result.stderr
    assert not (tmp_path / "onnx").exists()


@pytest.mark.slow
def test_onnx_matches_predict(npz_run, series_run, tmp_path):
    if importlib.util.find_spec("tf2onnx") is None:
        if os.environ.get("SEQTRAIN_REQUIRE_EXTRAS"):
            pytest.fail("the onnx extra is not installed, and CI requires it")
        pytest.skip("needs the onnx extra: pip install 'seqtrain[onnx]'")
    import onnxruntime

    from seqtrain.trained import TrainedRun

    for name, run, source in (("npz", npz_run, NPZ),
                              ("csv", series_run, series_run.parent / "load.csv")):
        result = invoke("export", run, "-o", tmp_path / name, "--format", "onnx", "--json",
                        "--quiet")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["checked"]["max_abs_difference"] <= 1e-4
        trained = TrainedRun(run)
        part = trained.prepare(source)
        session = onnxruntime.InferenceSession(str(tmp_path / name / "model.onnx"))
        (found,) = session.run(None, {session.get_inputs()[0].name: part.x})
        expected = trained.predict(source).outputs
        np.testing.assert_allclose(found, expected, atol=1e-4, rtol=1e-4)


def test_an_export_appears_whole_readable_by_others_and_leaves_no_temporary_folder(
        npz_run, tmp_path):
    assert invoke("export", npz_run, "-o", tmp_path / "new" / "served", "--quiet").exit_code == 0
    served = tmp_path / "new" / "served"
    names = sorted(p.name for p in served.iterdir())
    assert "preprocessing.json" in names and "saved_model.pb" in names
    assert os.listdir(tmp_path / "new") == ["served"]
    assert stat.S_IMODE(served.stat().st_mode) == atomic.permissions(0o777)  # as mkdir makes


def test_a_run_resumes_past_an_interrupted_exports_leftovers(npz_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(npz_run, run)
    (run / ".model.x1y2.export").mkdir()  # an export into the run, killed half way
    (run / ".model.a1b2.tmp").mkdir()  # a folder that looks like a temporary file
    result = invoke("resume", run)
    assert result.exit_code == 0 and "nothing to resume" in result.stderr, result.stderr
