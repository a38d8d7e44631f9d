"""Device selection and seeding: what can be checked on a CPU, and GPU tests that skip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from seqtrain import runtime
from seqtrain.errors import DeviceError
from tests.conftest import ROOT, TINY, gpu_env, write_config


def test_cpu_hides_gpus_before_tensorflow_starts():
    # A fresh process: CUDA_VISIBLE_DEVICES only works before TensorFlow is imported, and a
    # tf.device scope would not keep cuDNN RNN kernels off a visible GPU.
    script = ("import os, sys; from seqtrain import runtime; runtime.prepare('cpu'); "
              "print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['KERAS_BACKEND'], "
              "'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["-1", "tensorflow", "False"]


@pytest.mark.parametrize("freeze", [True, False])
def test_tensorflow_starts_with_its_objects_frozen_only_when_tuned(freeze: bool):
    # A fresh process: what the import creates is frozen once (`gc.freeze`), so full
    # collections no longer walk it; the collector itself is on again afterwards. Without
    # the speed layer (cpu_tuning: off) the collector is left alone.
    script = ("import gc, sys; from seqtrain import runtime; "
              f"assert gc.get_freeze_count() == 0; runtime.start_tensorflow('cpu', {freeze}); "
              f"frozen = gc.get_freeze_count(); runtime.start_tensorflow('cpu', {freeze}); "
              "print(gc.isenabled(), 'keras' in sys.modules, frozen > 100_000, "
              "gc.get_freeze_count() == frozen)")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["True", "True", str(freeze), "True"]


def test_auto_and_cpu_train_on_the_cpu_when_no_gpu_is_seen():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    for device in ("auto", "cpu"):
        devices = runtime.select_device(device)
        assert devices.used == ["/device:CPU:0"] and not devices.is_gpu


@pytest.mark.parametrize("device", ["gpu", "gpu:0", "gpu:7"])
def test_a_missing_gpu_is_a_device_error_that_says_what_to_do(device):
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) > int(device.partition(":")[2] or 0):
        pytest.skip("that GPU exists here")
    with pytest.raises(DeviceError, match=r"TensorFlow sees \d GPU\(s\).*device: auto or cpu"):
        runtime.select_device(device)


@pytest.mark.gpu
@pytest.mark.parametrize("device", ["auto", "gpu", "gpu:0"])
def test_a_tiny_run_on_the_gpu_records_it(device: str, tmp_path: Path):
    config = write_config(tmp_path, {**TINY, "device": device})
    result = subprocess.run([sys.executable, "-m", "seqtrain", "run", str(config), "--run-dir",
                             str(tmp_path / "gpu"), "--quiet"], env=gpu_env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    env = json.loads((tmp_path / "gpu" / "env.json").read_text())
    assert env["devices"] == ["/device:GPU:0"] and env["device_details"]


@pytest.mark.gpu
def test_cpu_keeps_a_gpu_machine_on_the_cpu(tmp_path: Path):
    config = write_config(tmp_path, {**TINY, "device": "cpu"})
    result = subprocess.run([sys.executable, "-m", "seqtrain", "run", str(config), "--run-dir",
                             str(tmp_path / "cpu"), "--quiet"], env=gpu_env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "cpu" / "env.json").read_text())["devices"] == ["/device:CPU:0"]


def test_cpu_thread_settings_reach_tensorflow_and_are_recorded(tmp_path: Path):
    from tests.conftest import run_cli

    # An explicit count wins over `null`, which gives this small product one thread per op.
    config = write_config(tmp_path, {**TINY, "runtime": {"intra_op_threads": 2,
                                                         "inter_op_threads": 1}})
    result = run_cli("run", config, "--run-dir", tmp_path / "run", "--quiet")
    assert result.returncode == 0, result.stderr
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["threads"] == {"intra_op": 2, "inter_op": 1}
