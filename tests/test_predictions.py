"""Predictions as tables and files: rows, keys, masked steps, formats (no TensorFlow)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from seqtrain.data.preprocessing import PAD
from seqtrain.data.registry import Split
from seqtrain.errors import SeqtrainError
from seqtrain.predictions import Predictions


def per_step_classes(key: str = "sequence") -> Predictions:
    """Two sequences of 4 steps: the first ends after step 2, the second has step 1 masked."""
    x = np.zeros((2, 4, 1), np.float32)
    x[0, 3] = PAD  # padding after the end
    x[1, 1] = PAD  # a missing step inside, masked
    outputs = np.array([[[0.9, 0.1]] * 4, [[0.2, 0.8]] * 4], np.float32)
    weights = np.array([[1, 1, 1, 0], [1, 0, 1, 1]], np.float32)
    y = np.array([[0, 1, 0, 0], [1, 1, 1, 0]])
    preprocessing = {"model_input": {"padding_value": PAD},
                     "output": {"kind": "classification", "per_step": True, "classes": [0, 1],
                                "key": key}}
    return Predictions(preprocessing, outputs, Split(x, y, weights, np.array(["a", "b"])),
                       with_true=True)


def test_per_step_rows_stop_at_each_end_and_keep_masked_steps_inside():
    predictions = per_step_classes()
    rows = list(predictions.rows())
    assert predictions.columns() == ["sequence", "step", "predicted", "prob_0", "prob_1",
                                     "true_class"]
    assert [(row[0], row[1]) for row in rows] == [("a", 0), ("a", 1), ("a", 2), ("b", 0),
                                                  ("b", 1), ("b", 2), ("b", 3)]
    assert rows[4][-1] is None  # the masked step has no target to compare with
    assert predictions.metrics()["accuracy"] == pytest.approx(4 / 6)


def test_every_format_writes_from_a_string_path_and_a_key_may_be_called_anything(tmp_path):
    predictions = per_step_classes(key="file")  # a column name np.savez would choke on
    for name in ("p.csv", "p.jsonl", "p.npz"):
        predictions.write(str(tmp_path / name))
    arrays = np.load(tmp_path / "p.npz")
    assert arrays["file"].tolist() == ["a", "b"] and arrays["probabilities"].shape == (2, 4, 2)
    with open(tmp_path / "p.csv", newline="") as file:
        assert len(list(csv.DictReader(file))) == 7
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert lines[4] == {"file": "b", "step": 1, "predicted": 1, "prob_0": pytest.approx(0.2),
                        "prob_1": pytest.approx(0.8), "true_class": None}
    clash = per_step_classes(key="predicted")
    assert set(clash.arrays()) >= {"key_predicted", "predicted"}
    with pytest.raises(SeqtrainError, match="write .csv, .jsonl or .npz"):
        predictions.write(tmp_path / "p.parquet")
    assert "2 sequences" in repr(predictions) and len(repr(predictions)) < 200


def test_a_window_forecast_adds_the_level_back():
    preprocessing = {"model_input": {}, "output": {
        "kind": "regression", "per_step": False, "names": ["load_t+1", "load_t+2"],
        "scale": [2.0, 2.0], "key": "time"}}
    split = Split(np.zeros((2, 3, 1), np.float32), np.array([[1.0, 2.0], [0.0, -1.0]]), None,
                  np.array(["t0", "t1"]), level=np.array([100.0, 200.0]))
    predictions = Predictions(preprocessing, np.array([[1.0, 1.0], [0.0, 0.0]]), split, True)
    assert list(predictions.rows()) == [["t0", 101.0, 101.0, 101.0, 102.0],
                                        ["t1", 200.0, 200.0, 200.0, 199.0]]
    metrics = predictions.metrics()
    assert metrics["mse"] == pytest.approx((0 + 1 + 0 + 1) / 4)
    assert metrics["loss"] == pytest.approx(metrics["mse"] / 4)  # standardised by 2
