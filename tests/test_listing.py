"""`seqtrain ls`: rows from run directories alone, filters, sorting, formats, broken runs."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT, invoke, run_cli, write_config


def fake_run(folder: Path, name: str, cell: str, units: int, status: str = "completed",
             val_loss: float | None = 0.5, seed: int = 1) -> Path:
    """A run directory as `seqtrain run` leaves it, without training (ls reads only files)."""
    run = folder / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(textwrap.dedent(f"""\
        name: exp
        seed: {seed}
        data: {{task: shifted_digit}}
        model: {{cell: {cell}, units: {units}, num_layers: 1}}
        train: {{epochs: 3}}
    """))
    (run / "summary.json").write_text(json.dumps({
        "status": status, "name": "exp", "epochs": 3, "epochs_run": 3,
        "best": {} if val_loss is None else {"val_loss": val_loss, "val_accuracy": 1 - val_loss},
        "test": {"accuracy": 0.9}, "wall_seconds": 12.5, "samples_per_second": 1000.0}))
    return run


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    plain = fake_run(folder, "a-lstm", "lstm", 64, val_loss=0.3)
    with open(plain / "config.yaml", "a") as file:
        file.write("runtime: {cpu_tuning: 'off'}\n")  # as config.yaml stores it
    fake_run(folder, "b-gru", "gru", 32, val_loss=0.1)
    fake_run(folder / "my-sweep", "c-gru", "gru", 64, status="interrupted", val_loss=0.2)
    fake_run(folder, "d-rnn", "simple_rnn", 64, status="running", val_loss=None)
    broken = folder / "e-broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("name: [\n")
    (folder / "f-torn").mkdir()
    (folder / "f-torn" / "summary.json").write_text('{"status": "comp')
    (folder / "not-a-run").mkdir()
    return folder


def rows(result) -> list[dict]:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_every_run_is_listed_broken_ones_with_their_problem(runs: Path):
    listed = {row["run"]: row for row in rows(invoke("ls", runs, "--format", "json"))}
    assert sorted(listed) == ["a-lstm", "b-gru", "d-rnn", "e-broken", "f-torn", "my-sweep/c-gru"]
    assert listed["a-lstm"]["cell"] == "lstm" and listed["a-lstm"]["units"] == 64
    assert listed["a-lstm"]["best_val_loss"] == 0.3 and listed["a-lstm"]["epochs"] == "3/3"
    assert listed["d-rnn"]["status"] == "killed"  # "running", but nobody holds its lock
    assert listed["e-broken"]["status"].startswith("broken: no summary.json")
    assert listed["f-torn"]["status"].startswith("broken: summary.json unreadable")


def test_filters_on_config_paths_and_summary_fields(runs: Path):
    def names(*filters):
        args = [a for f in filters for a in ("--filter", f)]
        return sorted(r["run"] for r in rows(invoke("ls", runs, *args, "--format", "json")))

    assert names("model.cell=gru") == ["b-gru", "my-sweep/c-gru"]
    assert names("model.cell=gru", "status=completed") == ["b-gru"]
    assert names("model.units=64", "seed=1") == ["a-lstm", "d-rnn", "my-sweep/c-gru"]
    assert names("best.val_loss=0.1") == ["b-gru"]
    assert names("model.cell=lstm_typo") == []
    assert names("runtime.cpu_tuning=off") == ["a-lstm"]  # `off`, a YAML boolean, as typed


def test_sort_ascending_descending_missing_last(runs: Path):
    order = [r["run"] for r in rows(invoke("ls", runs, "--sort", "best_val_loss",
                                           "--format", "json"))]
    assert order[:3] == ["b-gru", "my-sweep/c-gru", "a-lstm"]
    order = [r["run"] for r in rows(invoke("ls", runs, "--sort", "-best_val_loss",
                                           "--format", "json"))]
    assert order[:3] == ["a-lstm", "my-sweep/c-gru", "b-gru"]
    assert order[-1] in ("d-rnn", "e-broken", "f-torn")


def test_a_nested_run_is_named_by_its_path_under_the_listed_folder(runs: Path, tmp_path: Path):
    fake_run(runs / "other-sweep", "c-gru", "gru", 8)  # the same trial name in two sweeps
    listed = rows(invoke("ls", runs, "--columns", "run,path", "--format", "json",
                         "--filter", "model.cell=gru"))
    assert [(r["run"], r["path"]) for r in listed] == [
        ("b-gru", str(runs / "b-gru")), ("my-sweep/c-gru", str(runs / "my-sweep" / "c-gru")),
        ("other-sweep/c-gru", str(runs / "other-sweep" / "c-gru"))]
    assert all((runs / r["run"]).is_dir() for r in listed)  # pastes after the folder
    alone = rows(invoke("ls", runs / "my-sweep", "--format", "json"))  # listing the sweep
    assert [r["run"] for r in alone] == ["c-gru"]
    itself = rows(invoke("ls", runs / "b-gru", "--format", "json"))  # a run dir itself
    assert [r["run"] for r in itself] == ["b-gru"]
    table = invoke("ls", runs, "--columns", "path,run")
    assert str(runs / "other-sweep" / "c-gru") in table.stdout


def test_columns_sort_and_filter_take_the_same_summary_paths(runs: Path):
    """A top-level summary field (`epochs_run`, as `run_dir` or `train_seconds`) works in
    all three options, and a key no run has is exit 2 in all three."""
    result = invoke("ls", runs, "--columns", "run,epochs_run,best_val_accuracy",
                    "--sort", "-epochs_run", "--filter", "epochs_run=3", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["epochs_run"] for r in table} == {"3"} and len(table) == 4
    assert table[0]["best_val_accuracy"] != ""
    for option, value in (("--columns", "run,epochs_rn"), ("--sort", "-epochs_rn"),
                          ("--filter", "epochs_rn=3")):
        bad = invoke("ls", runs, option, value)
        assert bad.exit_code == 2 and f"{option}: unknown " in bad.stderr
        assert "'epochs_rn'" in bad.stderr and "Did you mean 'epochs_run'?" in bad.stderr
        assert bad.stdout == "" and "Traceback" not in bad.stderr
    empty = invoke("ls", runs, "--sort=-")
    assert empty.exit_code == 2 and "--sort got ''; expected a column or a config" in empty.stderr


def test_overlapping_folders_list_each_run_once(runs: Path):
    nested = next(p for p in runs.iterdir() if p.is_dir())
    once = invoke("ls", runs, "--format", "json")
    twice = invoke("ls", runs, nested.parent, "--format", "json")
    assert twice.exit_code == 0 and twice.stdout == once.stdout


def test_csv_and_table_formats(runs: Path):
    result = invoke("ls", runs, "--format", "csv", "--filter", "status=completed")
    assert result.exit_code == 0
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["run"] for r in table] == ["a-lstm", "b-gru"]
    assert list(table[0])[:3] == ["run", "name", "status"]
    result = invoke("ls", runs)
    assert result.exit_code == 0 and "a-lstm" in result.stdout and "best_val_loss" in result.stdout
    assert "6 run(s)" in result.stderr


def test_bad_ls_input_is_exit_2(runs: Path, tmp_path: Path):
    for args, words in (([runs, "--format", "xml"], "expected table, csv or json"),
                        ([runs, "--filter", "model.cell"], "expected key=value"),
                        ([tmp_path / "nowhere"], "is not a folder")):
        result = invoke("ls", *args)
        assert result.exit_code == 2 and words in result.stderr


def test_ls_never_imports_tensorflow(runs: Path):
    script = ("import sys\nfrom typer.testing import CliRunner\nfrom seqtrain.cli import app\n"
              f"result = CliRunner().invoke(app, ['ls', {str(runs)!r}])\n"
              "assert result.exit_code == 0, result.output\n"
              "print([m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def regression_run(folder: Path, name: str, mse: float = 0.25) -> Path:
    """A finished forecast's run directory, its summary as `seqtrain run` writes one."""
    run = fake_run(folder, name, "gru", 16)
    summary = json.loads((run / "summary.json").read_text())
    summary.update(task={"kind": "regression", "metric": "mae", "per_step": False},
                   best={"loss": mse, "mae": 0.4, "mse": mse, "val_loss": mse, "val_mae": 0.41,
                         "val_mse": mse},
                   test={"loss": mse, "mae": 0.42, "mse": mse})
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def header(result) -> list[str]:
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()[0].split()


def test_the_table_shows_the_results_of_the_runs_kind_of_task(tmp_path: Path):
    fake_run(tmp_path / "mixed", "cls", "lstm", 8)
    regression_run(tmp_path / "mixed", "reg")
    regression_run(tmp_path / "forecasts", "reg-only")
    fake_run(tmp_path / "digits", "cls-only", "lstm", 8)

    regression = header(invoke("ls", tmp_path / "forecasts"))
    assert {"best_val_mse", "best_val_mae", "test_mse", "test_mae"} <= set(regression)
    assert not any("accuracy" in column for column in regression)
    classification = header(invoke("ls", tmp_path / "digits"))
    assert {"best_val_accuracy", "test_accuracy"} <= set(classification)
    assert not any("mse" in column or "mae" in column for column in classification)

    mixed = invoke("ls", tmp_path / "mixed", "--columns", "run,test_accuracy,test_mae,epochs")
    assert header(mixed) == ["run", "test_accuracy", "test_mae", "epochs"]
    lines = {line.split()[0]: line for line in mixed.stdout.splitlines()[1:]}
    # Not applicable is blank, not "-": the regression has no accuracy, the other no mae.
    assert lines["cls"].split() == ["cls", "0.9", "3/3"]
    assert lines["reg"].split() == ["reg", "0.42", "3/3"]
    assert set(header(invoke("ls", tmp_path / "mixed"))) >= {"test_accuracy", "test_mse"}


def test_columns_choose_and_an_unknown_one_is_exit_2(runs: Path):
    result = invoke("ls", runs, "--columns", "run, model.units,best_epoch", "--sort", "run")
    assert header(result) == ["run", "model.units", "best_epoch"]
    assert result.stdout.splitlines()[1].split() == ["a-lstm", "64", "-"]
    for columns, words in (("run,tset_accuracy", "unknown column 'tset_accuracy'"),
                           ("run,model.unitz", "unknown column 'model.unitz'"),
                           (",", "expected names separated by commas")):
        bad = invoke("ls", runs, "--columns", columns)
        assert bad.exit_code == 2 and words in bad.stderr and bad.stdout == ""
        assert "Traceback" not in bad.stderr
    assert "Did you mean 'test_accuracy'" in invoke("ls", runs, "--columns", "tset_accuracy").stderr
    assert "test_mae" in invoke("ls", runs, "--columns", "nope").stderr  # the allowed ones


def test_columns_take_a_config_path_that_is_null_in_every_run(tmp_path: Path):
    from seqtrain.config import dump_config, load_config

    run = fake_run(tmp_path, "a", "lstm", 8)
    # config.yaml as `seqtrain run` writes it: every field, train.clipnorm: null
    (run / "config.yaml").write_text(dump_config(load_config(write_config(tmp_path))))
    result = invoke("ls", tmp_path, "--columns", "run,train.clipnorm,train.early_stopping")
    assert result.exit_code == 0, result.stderr
    assert header(result) == ["run", "train.clipnorm", "train.early_stopping"]
    assert result.stdout.splitlines()[1].split() == ["a", "-", "-"]
    bad = invoke("ls", tmp_path, "--columns", "run,train.clipnorn")
    assert bad.exit_code == 2 and "unknown column 'train.clipnorn'" in bad.stderr


def test_csv_and_json_give_every_metric(tmp_path: Path):
    fake_run(tmp_path, "cls", "lstm", 8)
    regression_run(tmp_path, "reg")
    result = invoke("ls", tmp_path, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    table = {row["run"]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert table["reg"]["best_val_mse"] == "0.25" and table["reg"]["best_mae"] == "0.4"
    assert table["reg"]["test_accuracy"] == "" and table["cls"]["test_accuracy"] == "0.9"
    assert table["reg"]["kind"] == "regression" and table["cls"]["kind"] == "classification"
    listed = {row["run"]: row for row in rows(invoke("ls", tmp_path, "--format", "json"))}
    assert listed["reg"]["test_mse"] == 0.25 and listed["cls"]["best_val_accuracy"] == 0.5
    chosen = rows(invoke("ls", tmp_path, "--format", "json", "--columns", "run,test_mae"))
    assert [sorted(row) for row in chosen] == [["path", "run", "test_mae"]] * 2


def test_a_wide_table_is_not_cut_when_stdout_is_not_a_terminal(tmp_path: Path):
    name = "a-run-with-a-long-name-" + "x" * 90
    regression_run(tmp_path, name)
    fake_run(tmp_path, "cls", "lstm", 8)
    result = run_cli("ls", tmp_path, env={"COLUMNS": "80"})  # stdout is a pipe
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "…" not in result.stdout and any(line.startswith(name + " ") for line in lines)
    assert {"test_accuracy", "test_mae", "samples_per_second"} <= set(lines[0].split())
    assert max(len(line) for line in lines) > 200


def test_a_real_regression_run_lists_its_mse_and_mae(series_run: Path):
    listed = rows(invoke("ls", series_run, "--format", "json"))[0]
    assert listed["kind"] == "regression" and listed["task"] == "csv_series"
    assert listed["best_val_mse"] > 0 and listed["test_mae"] > 0
    assert listed["test_accuracy"] is None
    columns = header(invoke("ls", series_run))
    assert {"best_val_mse", "best_val_mae", "test_mse", "test_mae"} <= set(columns)
    assert "test_accuracy" not in columns
