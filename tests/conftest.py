"""Shared fixtures: tiny but real experiments, and a CLI runner that keeps stdout apart."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from seqtrain.cli import app

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
NPZ = ROOT / "examples" / "sequences.npz"

TINY = {
    "name": "tiny",
    "seed": 7,
    "device": "cpu",
    "data": {"task": "shifted_digit", "sequence_length": 6, "shift": 2, "num_classes": 4,
             "num_samples": 240, "split": {"train": 0.8, "val": 0.1, "test": 0.1}},
    "model": {"cell": "lstm", "units": 8, "dropout": 0.1},
    "train": {"epochs": 2, "batch_size": 32},
}


def write_config(folder: Path, config: dict | None = None, name: str = "tiny.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(config or TINY, sort_keys=False))
    return path


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A valid experiment that trains in about a second."""
    return write_config(tmp_path)


def invoke(*args: str):
    """Run the CLI in-process; the result has separate `.stdout` and `.stderr`."""
    return CliRunner().invoke(app, [str(a) for a in args])


def run_cli(*args, cwd: Path | None = None, check: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m seqtrain` in a fresh process, as a user's shell would (plus `env`)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "seqtrain", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, check=check, timeout=600)


def gpu_env() -> dict[str, str]:
    """The environment for a child process that may use GPUs: in-process `device: cpu`
    tests hide them from this process and, through os.environ, from its children."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


@functools.cache
def gpu_count() -> int:
    """GPUs a fresh TensorFlow process sees (asked only where an NVIDIA device exists)."""
    if not (Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi")):
        return 0
    script = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    out = subprocess.run([sys.executable, "-c", script], env=gpu_env(), capture_output=True,
                         text=True, timeout=300)
    return int(out.stdout.strip() or 0)


def pytest_runtest_setup(item):
    """Tests marked `gpu` skip, rather than fail, where TensorFlow sees no GPU."""
    if item.get_closest_marker("gpu") and gpu_count() == 0:
        pytest.skip("needs a GPU visible to TensorFlow")


# --- trained runs shared by the predict, export and API tests (never modified) ----------

def series_csv(path: Path, rows: int = 360) -> Path:
    """An hourly series that grows out of its training range, with a daily cycle."""
    rng = np.random.default_rng(4)
    t = np.arange(rows)
    temperature = 15 + 5 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.5, rows)
    load = 100 + 0.3 * t + 8 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1, rows)
    start = np.datetime64("2026-03-01T00:00")
    lines = ["time,load,temperature"] + [
        f"{start + np.timedelta64(int(h), 'h')},{load[h]:.3f},{temperature[h]:.3f}" for h in t]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def npz_run(tmp_path_factory) -> Path:
    """The shipped npz example (ragged, masked, missing values carried forward), 2 epochs."""
    folder = tmp_path_factory.mktemp("npz")
    result = invoke("run", ROOT / "configs" / "npz_example.yaml", "--run-dir", folder / "run",
                    "--quiet", "--set", "train.epochs=2", "--set", "device=cpu")
    assert result.exit_code == 0, result.stderr
    return folder / "run"


@pytest.fixture(scope="session")
def series_run(tmp_path_factory) -> Path:
    """A csv_series forecast with window normalization: a GRU, 3 steps ahead."""
    folder = tmp_path_factory.mktemp("series")
    series_csv(folder / "load.csv")
    config = write_config(folder, {
        "name": "load", "seed": 3, "device": "cpu",
        "data": {"task": "csv_series", "path": "load.csv", "columns": ["load", "temperature"],
                 "target": "load", "date_column": "time", "sequence_length": 12, "horizon": 3,
                 "normalization": "window"},
        "model": {"cell": "gru", "units": 8},
        "train": {"epochs": 3, "batch_size": 32, "learning_rate": 0.01}})
    result = invoke("run", config, "--run-dir", folder / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    return folder / "run"
