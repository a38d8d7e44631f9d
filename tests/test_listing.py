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

from tests.conftest import ROOT, invoke


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
    assert sorted(listed) == ["a-lstm", "b-gru", "c-gru", "d-rnn", "e-broken", "f-torn"]
    assert listed["a-lstm"]["cell"] == "lstm" and listed["a-lstm"]["units"] == 64
    assert listed["a-lstm"]["best_val_loss"] == 0.3 and listed["a-lstm"]["epochs"] == "3/3"
    assert listed["d-rnn"]["status"] == "killed"  # "running", but nobody holds its lock
    assert listed["e-broken"]["status"].startswith("broken: no summary.json")
    assert listed["f-torn"]["status"].startswith("broken: summary.json unreadable")


def test_filters_on_config_paths_and_summary_fields(runs: Path):
    def names(*filters):
        args = [a for f in filters for a in ("--filter", f)]
        return sorted(r["run"] for r in rows(invoke("ls", runs, *args, "--format", "json")))

    assert names("model.cell=gru") == ["b-gru", "c-gru"]
    assert names("model.cell=gru", "status=completed") == ["b-gru"]
    assert names("model.units=64", "seed=1") == ["a-lstm", "c-gru", "d-rnn"]
    assert names("best.val_loss=0.1") == ["b-gru"]
    assert names("model.cell=lstm_typo") == []
    assert names("runtime.cpu_tuning=off") == ["a-lstm"]  # `off`, a YAML boolean, as typed


def test_sort_ascending_descending_missing_last(runs: Path):
    order = [r["run"] for r in rows(invoke("ls", runs, "--sort", "best_val_loss",
                                           "--format", "json"))]
    assert order[:3] == ["b-gru", "c-gru", "a-lstm"]
    order = [r["run"] for r in rows(invoke("ls", runs, "--sort", "-best_val_loss",
                                           "--format", "json"))]
    assert order[:3] == ["a-lstm", "c-gru", "b-gru"] and order[-1] in ("d-rnn", "e-broken",
                                                                        "f-torn")


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
