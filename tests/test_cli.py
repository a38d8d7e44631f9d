"""The command line as a shell sees it: exit codes, streams, and what it never imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from seqtrain import __version__
from tests.conftest import CONFIGS, ROOT, TINY, invoke, run_cli, write_config

HEAVY = ("tensorflow", "keras")


def test_help_and_validate_never_import_tensorflow(tmp_path: Path):
    script = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from seqtrain.cli import app
        runner = CliRunner()
        for args in (["--help"], ["run", "--help"], ["eval", "--help"], ["predict", "--help"],
                     ["export", "--help"], ["predict", {str(tmp_path)!r}, "--split", "test"],
                     ["validate", {str(CONFIGS / "shifted_digit_lstm.yaml")!r}],
                     ["validate", {str(tmp_path / "missing.yaml")!r}]):
            runner.invoke(app, args)
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_missing_data_file_is_told_before_tensorflow_starts(tmp_path: Path):
    config = yaml.safe_load((CONFIGS / "csv_series_example.yaml").read_text())
    config["data"]["path"] = str(tmp_path / "lod.csv")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    script = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from seqtrain.cli import app
        for args in (["validate", {str(path)!r}],
                     ["run", {str(path)!r}, "--runs-dir", {str(tmp_path / "runs")!r}],
                     ["sweep", {str(path)!r}, "--grid", "model.cell=lstm,gru", "--runs-dir",
                      {str(tmp_path / "runs")!r}],
                     ["validate", {str(path)!r}, "--set", "data.path={tmp_path}"]):
            result = CliRunner().invoke(app, args)
            print(result.exit_code, result.stderr.strip())
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    missing = f"error: data.path: {tmp_path / 'lod.csv'} does not exist"
    assert out.stdout.splitlines()[0].startswith(f"2 {missing}"), out.stdout + out.stderr
    assert out.stdout.splitlines()[1].startswith(f"2 {missing}"), out.stdout + out.stderr
    assert out.stdout.splitlines()[2].startswith(f"2 {missing}"), out.stdout + out.stderr
    assert out.stdout.splitlines()[3] == f"2 error: data.path: {tmp_path} is a folder; " \
        "expected a data file"
    assert out.stdout.splitlines()[4] == "[]"
    assert not (tmp_path / "runs").exists()


def test_the_console_script_answers_help_from_a_real_process():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "run" in result.stdout and "eval" in result.stdout and "validate" in result.stdout


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"seqtrain {__version__}"


def test_no_arguments_shows_help_and_a_usage_error_exits_2():
    assert "Usage" in invoke().stdout
    result = invoke("run", "--no-such-flag", "x.yaml")
    assert result.exit_code == 2


def test_validate_json_is_machine_readable(tiny_config: Path):
    import json

    result = invoke("validate", tiny_config, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["model"]["units"] == 8


def test_a_gpu_this_machine_lacks_is_exit_2_and_leaves_nothing(tmp_path: Path):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        import pytest

        pytest.skip("this machine has a GPU")
    config = write_config(tmp_path, {**TINY, "device": "gpu:0"})
    runs = tmp_path / "runs"
    result = invoke("run", config, "--runs-dir", runs)
    assert result.exit_code == 2
    assert "device 'gpu:0'" in result.stderr and "device: auto or cpu" in result.stderr
    assert "Traceback" not in result.stderr
    assert not runs.exists()


def test_an_existing_run_dir_is_never_overwritten(tiny_config: Path, tmp_path: Path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    result = invoke("run", tiny_config, "--run-dir", target)
    assert result.exit_code == 2
    assert "already exists" in result.stderr and str(target) in result.stderr
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_runs_dir_and_run_dir_exclude_each_other(tiny_config: Path, tmp_path: Path):
    result = invoke("run", tiny_config, "--runs-dir", tmp_path / "a", "--run-dir", tmp_path / "b")
    assert result.exit_code == 2 and "exclude each other" in result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_eval_rejects_what_is_not_a_run_directory(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for path, words in ((empty, "not a seqtrain run directory"),
                        (tmp_path / "nowhere", "does not exist"),
                        (a_file, "is a file")):
        result = invoke("eval", path)
        assert result.exit_code == 2, result.stderr
        assert words in result.stderr and "Traceback" not in result.stderr
        assert not (path / "eval.json").exists() if path.is_dir() else True


def test_eval_rejects_a_bad_checkpoint_choice_and_device(tmp_path: Path):
    assert "expected best or last" in invoke("eval", tmp_path, "--checkpoint", "worst").stderr
    result = invoke("eval", tmp_path, "--device", "tpu")
    assert result.exit_code == 2 and "--device got 'tpu'" in result.stderr
    result = invoke("eval", tmp_path, "--device", "gpu:0,1")
    assert result.exit_code == 2 and "eval runs on one device" in result.stderr
