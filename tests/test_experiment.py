"""Real, tiny training runs through the CLI, and every file they leave behind."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rich.console import Console

from seqtrain.config import load_config
from tests.conftest import CONFIGS, ROOT, TINY, invoke, run_cli, write_config

METRIC_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                  "epoch_seconds", "gradient_norm", "gradient_clipped", "gradient_first_to_last",
                  "gradient_norm_lstm_1", "gradient_norm_head"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, str, str]:
    """One tiny run: (run directory, stdout, stderr)."""
    folder = tmp_path_factory.mktemp("e2e")
    config = write_config(folder)
    result = invoke("run", config, "--runs-dir", folder / "runs", "--set", "train.epochs=3")
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip()), result.stdout, result.stderr


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_stdout_is_only_the_run_directory_named_after_the_experiment(finished_run):
    run_dir, stdout, stderr = finished_run
    assert stdout == f"{run_dir}\n"
    assert run_dir.is_dir() and run_dir.parent.name == "runs"
    name, stamp, suffix = run_dir.name.rsplit("-", 2)
    assert name == "tiny.epochs=3" and len(stamp) == 16 and stamp.endswith("Z") and len(suffix) >= 4
    assert "epoch 3/3" in stderr  # plain progress: stderr is not a terminal here


def test_the_run_directory_holds_every_promised_file(finished_run):
    run_dir, _, _ = finished_run
    names = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*"))
    # An event file's name carries a time, the host and the process id: one per split.
    events = [n for n in names if n.startswith("tensorboard/") and n.count("/") == 2]
    assert [n.rsplit("/", 1)[0] for n in events] == ["tensorboard/train", "tensorboard/validation"]
    assert all(n.rsplit("/", 1)[1].startswith("events.out.tfevents.") for n in events)
    assert [n for n in names if n not in events] == [
        "checkpoints", "checkpoints/best.keras", "checkpoints/last.keras",
        "checkpoints/resume.json", "checkpoints/state-e0003-s000000.keras", "config.yaml",
        "curves.png", "env.json", "gradient_flow.csv", "gradient_flow.png", "metrics.csv",
        "overrides.txt", "plan.json",
        "preprocessing.json", "run.lock", "summary.json", "tensorboard", "tensorboard/train",
        "tensorboard/validation"]
    # last.keras is the final state under a name users know: one file, two names.
    assert (run_dir / "checkpoints/last.keras").samefile(
        run_dir / "checkpoints/state-e0003-s000000.keras")


def test_config_yaml_is_the_resolved_config_with_overrides_applied(finished_run):
    run_dir, _, _ = finished_run
    resolved = load_config(run_dir / "config.yaml")
    assert resolved.train.epochs == 3 and resolved.model.units == 8
    assert resolved.train.optimizer == "adam"  # a default, written out
    overrides = (run_dir / "overrides.txt").read_text().splitlines()
    assert overrides[0].startswith("# seqtrain") and overrides[1:] == ["train.epochs=3"]


def test_env_json_records_versions_devices_and_time(finished_run):
    env = json.loads((finished_run[0] / "env.json").read_text())
    for key in ("python", "tensorflow", "keras", "numpy", "seqtrain", "host", "started_at",
                "git_commit"):
        assert key in env
    assert env["device_requested"] == "cpu" and env["devices"] == ["/device:CPU:0"]


def test_metrics_csv_has_one_row_per_epoch_in_a_fixed_column_order(finished_run):
    path = finished_run[0] / "metrics.csv"
    assert path.read_text().splitlines()[0] == ",".join(METRIC_COLUMNS)
    rows = read_metrics(path)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row in rows:
        assert 0.0 <= float(row["accuracy"]) <= 1.0 and float(row["loss"]) > 0
        assert float(row["learning_rate"]) == pytest.approx(0.001)
        assert float(row["epoch_seconds"]) > 0


def test_summary_json_describes_the_finished_run(finished_run):
    run_dir, _, _ = finished_run
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = read_metrics(run_dir / "metrics.csv")
    assert summary["status"] == "completed" and summary["error"] is None
    assert summary["epochs_run"] == summary["epochs"] == 3
    assert summary["run_dir"] == str(run_dir.resolve())
    best_row = min(rows, key=lambda r: float(r["val_loss"]))
    assert summary["best_epoch"] == int(best_row["epoch"])
    assert summary["best"]["val_loss"] == pytest.approx(float(best_row["val_loss"]))
    assert summary["final"]["loss"] == pytest.approx(float(rows[-1]["loss"]))
    assert set(summary["test"]) == {"loss", "accuracy"}
    assert summary["num_params"] > 0 and summary["samples_per_second"] > 0
    assert summary["wall_seconds"] >= summary["train_seconds"] > 0
    # The copy `seqtrain ls` reads instead of parsing YAML is the resolved config itself.
    assert summary["config"] == yaml.safe_load((run_dir / "config.yaml").read_text())


def test_the_checkpoints_reload_safely_and_predict_per_step(finished_run):
    import keras

    run_dir, _, _ = finished_run
    for which in ("best", "last"):
        model = keras.saving.load_model(run_dir / "checkpoints" / f"{which}.keras",
                                        safe_mode=True)
        probabilities = model.predict(np.zeros((2, 6, 4), "float32"), verbose=0)
        assert probabilities.shape == (2, 6, 4)
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


def test_eval_reproduces_the_test_metrics_in_the_summary(finished_run):
    run_dir, _, _ = finished_run
    summary = json.loads((run_dir / "summary.json").read_text())
    result = invoke("eval", run_dir, "--json")
    assert result.exit_code == 0, result.stderr
    evaluation = json.loads(result.stdout)
    assert evaluation["metrics"]["accuracy"] == summary["test"]["accuracy"]
    assert evaluation["metrics"]["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-6)
    assert json.loads((run_dir / "eval.json").read_text()) == evaluation
    assert evaluation["num_samples"] == 24 and evaluation["checkpoint"] == "best"


def test_eval_of_the_last_checkpoint(finished_run):
    result = invoke("eval", finished_run[0], "--checkpoint", "last", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert json.loads((finished_run[0] / "eval.json").read_text())["checkpoint"] == "last"


def test_eval_of_a_damaged_or_missing_checkpoint_is_exit_2(finished_run, tmp_path: Path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run[0], copy)
    (copy / "checkpoints" / "best.keras").write_bytes(b"not a zip file")
    result = invoke("eval", copy)
    assert result.exit_code == 2 and "damaged" in result.stderr
    assert "Traceback" not in result.stderr
    (copy / "checkpoints" / "last.keras").unlink()
    result = invoke("eval", copy, "--checkpoint", "last")
    assert result.exit_code == 2 and "last.keras is missing" in result.stderr


def test_run_json_prints_exactly_summary_json(tiny_config: Path, tmp_path: Path):
    result = invoke("run", tiny_config, "--run-dir", tmp_path / "exact", "--json",
                    "--set", "train.epochs=1", "--set", "model.cell=gru")
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == json.loads((tmp_path / "exact" / "summary.json").read_text())


@pytest.mark.parametrize("cell", ["simple_rnn", "gru"])
def test_other_cells_and_stacked_layers_train(cell: str, tiny_config: Path, tmp_path: Path):
    result = invoke("run", tiny_config, "--run-dir", tmp_path / cell, "--quiet",
                    "--set", f"model.cell={cell}", "--set", "model.num_layers=2",
                    "--set", "train.epochs=1", "--set", "train.optimizer=rmsprop")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # --quiet: nothing on stderr at all
    assert json.loads((tmp_path / cell / "summary.json").read_text())["status"] == "completed"


def test_two_runs_of_one_config_give_identical_metrics(tmp_path: Path):
    config = write_config(tmp_path)
    # Separate processes, started together: the claim is about independent runs.
    procs = [subprocess.Popen([sys.executable, "-m", "seqtrain", "run", str(config),
                               "--run-dir", str(tmp_path / f"r{i}"), "--quiet"],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    first, second = (read_metrics(tmp_path / f"r{i}" / "metrics.csv") for i in (0, 1))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in rows]  # noqa: E731
    assert strip(first) == strip(second)
    tests = [json.loads((tmp_path / f"r{i}" / "summary.json").read_text())["test"] for i in (0, 1)]
    assert tests[0] == tests[1]
    command = (tmp_path / "r0" / "overrides.txt").read_text().splitlines()[0]
    assert command == f"# seqtrain run {config} --run-dir {tmp_path / 'r0'} --quiet"


def test_a_run_traces_each_step_once_and_validation_ahead_changes_no_result(tmp_path: Path,
                                                                          monkeypatch):
    import threading

    import keras

    traced: list[tuple[str, str]] = []
    for kind in ("train", "test"):
        step = getattr(keras.Model, f"{kind}_step")

        def counted(self, data, step=step, kind=kind):
            traced.append((kind, threading.current_thread().name))
            return step(self, data)

        monkeypatch.setattr(keras.Model, f"{kind}_step", counted)
    config = write_config(tmp_path)  # batch 8: 24 training batches, 2 calls an epoch
    rows = {}
    for warm in ("true", "false"):
        traced.clear()
        result = invoke("run", config, "--run-dir", tmp_path / warm, "--quiet", "--set",
                        "train.batch_size=8", "--set", f"runtime.warm_validation={warm}")
        assert result.exit_code == 0, result.stderr
        validation = "seqtrain-warm-validation" if warm == "true" else "MainThread"
        # Training once, validation once (ahead or not); the test split reuses that graph:
        # the last epoch is the best, so the trained model is best.keras.
        summary = json.loads((tmp_path / warm / "summary.json").read_text())
        assert summary["best_epoch"] == summary["epochs_run"] == 2
        assert traced == [("train", "MainThread"), ("test", validation)]
        rows[warm] = [{k: v for k, v in row.items() if k != "epoch_seconds"}
                      for row in read_metrics(tmp_path / warm / "metrics.csv")]
        evaluation = invoke("eval", tmp_path / warm, "--json")  # best.keras, from the file
        assert json.loads(evaluation.stdout)["metrics"] == summary["test"]
    assert rows["true"] == rows["false"]


def test_a_diverging_run_stops_keeps_its_files_and_exits_1(tiny_config: Path, tmp_path: Path):
    result = invoke("run", tiny_config, "--run-dir", tmp_path / "nan", "--quiet",
                    "--set", "train.optimizer=sgd", "--set", "train.learning_rate=1e38")
    assert result.exit_code == 1, result.stderr
    assert "learning_rate" in result.stderr and "clipnorm" in result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "nan" / "summary.json").read_text())  # strict JSON
    assert summary["status"] == "diverged"
    assert result.stdout.strip() == str(tmp_path / "nan")


def test_the_rich_display_draws_bars_and_a_results_table(tiny_config: Path, tmp_path: Path):
    from seqtrain.experiment import run_experiment

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    _, summary = run_experiment(load_config(tiny_config), exact_dir=tmp_path / "rich",
                                display="rich", console=console)
    output = buffer.getvalue()
    assert summary["status"] == "completed"
    assert "epoch 2/2" in output and "━" in output  # a bar was drawn


def test_the_classic_seed_layout_stays_at_chance(tmp_path: Path):
    result = invoke("run", CONFIGS / "shifted_digit_seed.yaml", "--run-dir", tmp_path / "seed",
                    "--quiet", "--set", "data.num_samples=4000", "--set", "train.batch_size=64",
                    "--set", "train.epochs=3", "--set", "train.steps_per_execution=16")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "seed" / "summary.json").read_text())
    assert summary["best"]["val_accuracy"] < 0.2  # chance is 0.1: nothing to learn


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_shipped_configs_reach_99_percent_validation_accuracy(cell: str, tmp_path: Path):
    result = run_cli("run", CONFIGS / f"shifted_digit_{cell}.yaml", "--run-dir", tmp_path / cell,
                     "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    rows = read_metrics(tmp_path / cell / "metrics.csv")
    assert len(rows) == yaml.safe_load((CONFIGS / f"shifted_digit_{cell}.yaml").read_text())[
        "train"]["epochs"]
    assert max(float(r["val_accuracy"]) for r in rows) >= 0.99
    assert summary["test"]["accuracy"] >= 0.99
    assert summary["warnings"] == []  # a healthy run: no gradient warning


def test_steps_per_execution_changes_speed_not_results(tiny_config: Path, tmp_path: Path):
    for steps in (1, 16):
        result = invoke("run", tiny_config, "--run-dir", tmp_path / f"spe{steps}", "--quiet",
                        "--set", f"train.steps_per_execution={steps}")
        assert result.exit_code == 0, result.stderr
    first, second = (read_metrics(tmp_path / f"spe{s}" / "metrics.csv") for s in (1, 16))
    assert [r["val_loss"] for r in first] == [r["val_loss"] for r in second]
    assert [r["loss"] for r in first] == [r["loss"] for r in second]


def test_jit_compile_needs_nondeterminism(tmp_path: Path):
    refused = invoke("validate", write_config(tmp_path, {**TINY, "train": {"jit_compile": True}}))
    assert refused.exit_code == 2 and "needs runtime.deterministic: false" in refused.stderr


@pytest.mark.slow
def test_a_jit_compiled_run_records_it(tmp_path: Path):
    # A fresh process: op determinism, once on in a process, keeps XLA off in all of it.
    xla = {"jit_compile": True, "epochs": 1, "batch_size": 32}
    config = write_config(tmp_path, {**TINY, "train": xla, "runtime": {"deterministic": False}},
                          "xla.yaml")
    result = run_cli("run", config, "--run-dir", tmp_path / "xla", "--quiet")
    assert result.returncode == 0, result.stderr
    speed = json.loads((tmp_path / "xla" / "summary.json").read_text())["speed_settings"]
    assert speed["jit_compile"] is True and speed["steps_per_execution"] == 16
    assert speed["batch_size"] == 32 and set(speed["threads"]) == {"intra_op", "inter_op"}


def test_eval_on_longer_sequences_than_training_writes_its_own_file(finished_run):
    run_dir, _, _ = finished_run
    before = json.loads((run_dir / "eval.json").read_text()) if (run_dir / "eval.json").exists() \
        else None
    result = invoke("eval", run_dir, "--set", "data.sequence_length=24", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    evaluation = json.loads(result.stdout)
    assert evaluation["overrides"] == ["data.sequence_length=24"]
    assert evaluation["file"].startswith("eval-") and (run_dir / evaluation["file"]).is_file()
    assert 0.0 <= evaluation["metrics"]["accuracy"] <= 1.0
    if before is not None:
        assert json.loads((run_dir / "eval.json").read_text()) == before  # untouched
    for bad, words in (("model.units=4", "only data.* overrides"),
                       ("data.num_classes=6", "the model reads steps of shape (4,)")):
        result = invoke("eval", run_dir, "--set", bad)
        assert result.exit_code == 2 and words in result.stderr, result.stderr
