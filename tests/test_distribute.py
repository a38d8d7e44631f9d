"""Several devices and precisions: MirroredStrategy on two logical CPUs, mixed precision.

The CPU is split into logical devices only before TensorFlow starts, so the mirrored runs
are fresh processes (`run_cli`); everything else runs in-process.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, TINY, gpu_env, invoke, run_cli, write_config

MIRRORED = {**TINY, "distribution": "mirrored", "runtime": {"cpu_devices": 2},
            "model": {"cell": "lstm", "units": 8, "dropout": 0.2},
            "train": {"epochs": 3, "batch_size": 32, "backup_every_steps": 2}}


def check(tmp_path: Path, config: dict) -> tuple[int, str]:
    result = invoke("validate", write_config(tmp_path, config))
    return result.exit_code, result.stderr


def test_multi_worker_is_refused_pointing_to_the_keras_issue_and_the_ray_executor(tmp_path):
    code, err = check(tmp_path, {**TINY, "distribution": "multi_worker"})
    assert code == 2
    assert "keras-team/keras/issues/20585" in err and "seqtrain sweep --executor ray" in err


@pytest.mark.parametrize("config,message", [
    ({"device": "gpu:0,1"}, "set distribution: mirrored"),
    ({"runtime": {"cpu_devices": 2}}, "runtime.cpu_devices (line 22): 2 splits the CPU"),
    ({"distribution": "mirrored", "train": {"steps_per_execution": 8}},
     "train.steps_per_execution (line 19): 8 fails under distribution: mirrored"),
    ({"distribution": "ring"}, "expected none or mirrored"),
    ({"precision": "float16"}, "mixed_float16"),
])
def test_settings_that_cannot_work_together_are_exit_2_naming_them(tmp_path, config, message):
    code, err = check(tmp_path, {**TINY, **config})
    assert code == 2 and message in err, err


def test_mirrored_runs_one_step_per_execution_unless_told_otherwise():
    from seqtrain.config import validate_config

    config = validate_config({**TINY, "distribution": "mirrored"}, {})
    assert config.train.steps_per_execution == 1
    assert validate_config({**TINY, "device": "gpu:0,1", "distribution": "mirrored"},
                           {}).device == "gpu:0,1"


def test_mixed_float16_on_a_cpu_is_exit_2_and_writes_nothing(tmp_path):
    result = invoke("run", write_config(tmp_path, {**TINY, "precision": "mixed_float16"}),
                    "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert "mixed_float16 needs a GPU" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_mixed_float16_keeps_the_output_float32_and_scales_the_loss():
    # Built and trained for a step on the CPU, where float16 runs (slowly): the model
    # seqtrain would train on a GPU.
    import keras

    from seqtrain.config import validate_config
    from seqtrain.data import build_dataset
    from seqtrain.models import build_model, compile_model

    data = {"task": "npz", "path": str(Path(__file__).parents[1] / "examples" / "sequences.npz"),
            "lengths": "lengths", "missing": "ffill"}
    config = validate_config({**TINY, "data": data}, {})
    dataset = build_dataset(config.data, config.seed, False)
    assert dataset.spec.masked
    model = build_model(config.model, dataset.spec, precision="mixed_float16")
    compile_model(model, config.train, dataset.spec, precision="mixed_float16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    policies = {layer.name: layer.dtype_policy.name for layer in model.layers}
    assert policies == {"masking": "float32", "lstm_1": "mixed_float16", "head": "float32"}
    split = dataset.train
    logs = model.train_on_batch(split.x[:32], split.y[:32], return_dict=True,
                                sample_weight=None if split.sample_weight is None
                                else split.sample_weight[:32])
    assert np.isfinite(logs["loss"])  # padding -1e9 is -inf in float16: kept out of it
    assert model(split.x[:2]).dtype == "float32"


def test_mixed_bfloat16_trains_saves_and_evaluates_on_the_cpu(tmp_path):
    result = invoke("run", write_config(tmp_path, {**TINY, "precision": "mixed_bfloat16"}),
                    "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["precision"] == "mixed_bfloat16"
    evaluated = invoke("eval", tmp_path / "run", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["metrics"] == summary["test"]


def rows(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [{k: float(v) for k, v in row.items() if k != "epoch_seconds"}
                for row in csv.DictReader(file)]


def last_weights(run_dir: Path) -> list[np.ndarray]:
    import keras

    model = keras.saving.load_model(run_dir / "checkpoints" / "last.keras", safe_mode=True)
    return [np.asarray(w) for w in model.get_weights()]


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("mirrored")
    config = write_config(folder, MIRRORED)
    result = run_cli("run", config, "--run-dir", folder / "run", "--quiet")
    assert result.returncode == 0, result.stderr
    return config, folder / "run"


@pytest.mark.slow  # a mirrored run on two logical CPUs
def test_mirrored_trains_on_two_logical_cpus_and_eval_reproduces_its_test(mirrored):
    _, run_dir = mirrored
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_run"] == 3
    assert summary["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["strategy"].startswith("MirroredStrategy, 2 replicas, 16 sequences")
    assert plan["steps_per_execution"] == 1
    assert (run_dir / "checkpoints" / "best.keras").is_file()
    evaluated = run_cli("eval", run_dir, "--json")  # one device: the checkpoint is plain
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["metrics"] == summary["test"]


@pytest.mark.slow
def test_a_mirrored_run_killed_mid_epoch_resumes_to_the_same_weights(mirrored, tmp_path):
    config, reference = mirrored
    run_dir = tmp_path / "run"
    killed = run_cli("run", config, "--run-dir", run_dir, "--quiet",
                     env={"SEQTRAIN_FAULT": "kill:resume.json:5"})
    assert killed.returncode == -signal.SIGKILL
    assert json.loads((run_dir / "checkpoints" / "resume.json").read_text())["step"] == 2
    result = run_cli("resume", run_dir, "--quiet")
    assert result.returncode == 0, result.stderr
    for got, want in zip(last_weights(run_dir), last_weights(reference), strict=True):
        assert got.tobytes() == want.tobytes()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test"] == json.loads((reference / "summary.json").read_text())["test"]
    # The resumed epoch's running accuracy is summed in another order across the two
    # replicas: equal to float32 rounding, not bit for bit.
    for got, want in zip(rows(run_dir), rows(reference), strict=True):
        assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.gpu
def test_mirrored_over_every_gpu_records_them(tmp_path):
    config = write_config(tmp_path, {**TINY, "device": "gpu", "distribution": "mirrored"})
    result = subprocess.run([sys.executable, "-m", "seqtrain", "run", str(config), "--run-dir",
                             str(tmp_path / "run"), "--quiet"], env=gpu_env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    devices = json.loads((tmp_path / "run" / "env.json").read_text())["devices"]
    assert devices and all("GPU" in d for d in devices)
