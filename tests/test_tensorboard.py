"""TensorBoard event files: written for every run, read back with TensorFlow's public API."""

from __future__ import annotations

import csv
import json
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY, invoke, run_cli, write_config

TRAIN_TAGS = {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_seconds",
              # the gradient probe's figures (docs/gradient-flow.md)
              "epoch_gradient_norm", "epoch_gradient_clipped", "epoch_gradient_first_to_last",
              "epoch_gradient_norm_lstm_1", "epoch_gradient_norm_head"}
VALIDATION_TAGS = {"epoch_loss", "epoch_accuracy"}


def events(folder: Path) -> list[tuple[str, int, object]]:
    """(tag, step, value) of every summary in `folder`'s event files, in file order."""
    import tensorflow as tf

    found = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                found.append((value.tag, event.step, tf.make_ndarray(value.tensor)))
    return found


def scalars(run_dir: Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """{(split, tag): [(step, value), ...]} of the run's scalar summaries."""
    found: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for split in ("train", "validation"):
        for tag, step, value in events(run_dir / "tensorboard" / split):
            if tag != "config":
                found.setdefault((split, tag), []).append((step, float(value)))
    return found


def csv_rows(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)]


def assert_match_metrics_csv(run_dir: Path) -> None:
    """One value per epoch and tag, each the float32 of metrics.csv's."""
    rows = csv_rows(run_dir)
    got = scalars(run_dir)
    assert set(got) == ({("train", t) for t in TRAIN_TAGS}
                        | {("validation", t) for t in VALIDATION_TAGS})
    for (split, tag), values in got.items():
        column = tag if tag == "epoch_seconds" else tag.removeprefix("epoch_")
        column = f"val_{column}" if split == "validation" else column
        want = [(int(row["epoch"]), float(np.float32(row[column]))) for row in rows]
        assert values == want, (split, tag)


def test_a_run_writes_every_epoch_value_and_its_config_to_event_files(tmp_path):
    config = write_config(tmp_path, {**TINY, "train": {**TINY["train"], "epochs": 3}})
    result = invoke("run", config, "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    run_dir = tmp_path / "run"
    assert_match_metrics_csv(run_dir)
    assert [step for step, _ in scalars(run_dir)[("train", "epoch_loss")]] == [1, 2, 3]
    [(tag, step, text)] = [e for e in events(run_dir / "tensorboard" / "train")
                           if e[0] == "config"]
    config_yaml = (run_dir / "config.yaml").read_text()
    assert step == 0
    assert text.item().decode() == f"```yaml\n{config_yaml.rstrip()}\n```"


def test_tensorboard_false_writes_no_event_files(tmp_path):
    result = invoke("run", write_config(tmp_path), "--run-dir", tmp_path / "run", "--quiet",
                    "--set", "train.tensorboard=false")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "run" / "metrics.csv").is_file()
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_a_killed_and_resumed_run_has_one_value_per_epoch_as_in_metrics_csv(tmp_path):
    config = write_config(tmp_path, {**TINY, "train": {**TINY["train"], "epochs": 3}})
    run_dir = tmp_path / "run"
    # Killed while saving epoch 2's state: epoch 2 is in metrics.csv and the event files,
    # but the run resumes after epoch 1 and trains epoch 2 again.
    killed = run_cli("run", config, "--run-dir", run_dir, "--quiet",
                     env={"SEQTRAIN_FAULT": "kill:resume.json:2"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [s for s, _ in scalars(run_dir)[("train", "epoch_loss")]] == [1, 2]
    result = invoke("resume", run_dir, "--quiet")
    assert result.exit_code == 0, result.stderr
    assert [int(row["epoch"]) for row in csv_rows(run_dir)] == [1, 2, 3]
    assert_match_metrics_csv(run_dir)
    steps = Counter((split, tag, step) for split in ("train", "validation")
                    for tag, step, _ in events(run_dir / "tensorboard" / split))
    assert max(steps.values()) == 1


@pytest.mark.slow  # a full disk at a checkpoint is in the default set
def test_a_full_disk_while_writing_events_fails_the_run_with_exit_1_and_a_message(tmp_path):
    config = write_config(tmp_path, {**TINY, "train": {**TINY["train"], "epochs": 3}})
    run_dir = tmp_path / "run"
    # Flushes: 1 when the session starts, then one per epoch: the 3rd is epoch 2's.
    result = run_cli("run", config, "--run-dir", run_dir, "--quiet",
                     env={"SEQTRAIN_FAULT": "enospc:events:3"})
    assert result.returncode == 1, result.stderr
    assert f"cannot write {run_dir / 'tensorboard'}: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left" in summary["error"]
    assert [int(row["epoch"]) for row in csv_rows(run_dir)] == [1, 2]  # metrics.csv: intact
