"""Learning-curve plots: curves.png of each run and `seqtrain plot` overlays."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from seqtrain.plots import (
    _config,
    best_epoch,
    comparison_figure,
    legend_labels,
    log_scale,
    read_metrics,
)
from tests.conftest import TINY, invoke, write_config


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header, checking it is one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory) -> Path:
    """Four real tiny runs: two cells, two seeds each."""
    folder = tmp_path_factory.mktemp("plots")
    config = write_config(folder, {**TINY, "train": {"epochs": 2, "batch_size": 32}})
    for cell in ("lstm", "gru"):
        for seed in (1, 2):
            result = invoke("run", config, "--run-dir", folder / "runs" / f"{cell}-{seed}",
                            "--quiet", "--set", f"model.cell={cell}", "--set", f"seed={seed}")
            assert result.exit_code == 0, result.stderr
    return folder / "runs"


def test_every_run_draws_its_curves(sweep_folder: Path):
    for run in sweep_folder.iterdir():
        assert png_size(run / "curves.png") == (1000, 400)


def test_plot_overlays_runs_and_bands_seeds(sweep_folder: Path, tmp_path: Path):
    output = tmp_path / "out" / "compare.png"
    result = invoke("plot", sweep_folder, "-o", output, "--metric", "val_accuracy")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(output)
    assert png_size(output) == (800, 500)
    single = invoke("plot", sweep_folder / "lstm-1", "-o", tmp_path / "one.png")
    assert single.exit_code == 0 and png_size(tmp_path / "one.png") == (800, 500)


def test_plotting_a_broken_run_or_a_missing_metric_is_exit_2(sweep_folder: Path,
                                                              tmp_path: Path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sweep_folder / "gru-1", broken)
    (broken / "metrics.csv").unlink()
    for args, words in (([broken], "metrics.csv is missing"),
                        ([sweep_folder, "--metric", "val_f1"], "has no 'val_f1'"),
                        ([tmp_path / "empty-dir"], "is not a folder")):
        result = invoke("plot", *args, "-o", tmp_path / "x.png")
        assert result.exit_code == 2, result.stderr
        assert words in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_losses_go_log_scale_only_when_they_span_two_decades():
    assert log_scale("val_loss", [[12.0, 3.0, 0.5], [0.3, 0.1]])  # 120x
    assert log_scale("loss", [[100.0, 1.0]]) and log_scale("val_mse", [[50.0, 0.4]])
    assert not log_scale("val_loss", [[1.39, 1.37], [1.38, 1.2]])
    assert not log_scale("val_loss", [[99.0, 1.0]])  # just under 100x
    assert not log_scale("val_accuracy", [[0.001, 0.9]])  # not a loss
    assert not log_scale("loss", [[100.0, 0.0]])  # a zero has no log
    assert log_scale("val_loss", [[float("nan"), 500.0, 2.0]])  # NaN of a divergence skipped
    assert not log_scale("val_loss", [])


def test_the_legend_shows_only_the_settings_that_differ():
    base = {"name": "x", "seed": 1, "model": {"cell": "lstm", "units": 8, "dropout": 0.1},
            "data": {"task": "adding", "columns": ["a", "b"]}}
    gru = {**base, "seed": 2, "model": {**base["model"], "cell": "gru", "units": 32}}
    assert legend_labels([base, gru], ["r1", "r2"]) == [
        "model.cell=lstm, model.units=8", "model.cell=gru, model.units=32"]
    wider = {**base, "data": {**base["data"], "columns": ["a", "b", "c"]}, "train": {"x": 1}}
    assert legend_labels([base, wider], ["r1", "r2"]) == [
        "data.columns=a,b, train.x=-", "data.columns=a,b,c, train.x=1"]
    # Nothing differs but the seed and name, or a single run: the run's name.
    assert legend_labels([base, {**base, "seed": 9, "name": "y"}], ["r1", "r2"]) == ["r1", "r2"]
    assert legend_labels([gru], ["only"]) == ["only"]


def test_the_best_epoch_is_the_one_the_run_recorded(sweep_folder: Path, tmp_path: Path):
    run = sweep_folder / "lstm-1"
    recorded = json.loads((run / "summary.json").read_text())["best_epoch"]
    assert best_epoch(run, read_metrics(run)) == recorded
    bare = tmp_path / "no-summary"  # killed before its summary: the lowest val_loss
    rows = [{"epoch": 1.0, "val_loss": 3.0, "val_accuracy": 0.1},
            {"epoch": 2.0, "val_loss": 1.0, "val_accuracy": 0.3},
            {"epoch": 3.0, "val_loss": 2.0, "val_accuracy": 0.5}]
    bare.mkdir()
    assert best_epoch(bare, rows) == 2
    (bare / "summary.json").write_text(json.dumps({"monitor": "val_accuracy", "mode": "max"}))
    assert best_epoch(bare, rows) == 3
    assert best_epoch(bare, [{"epoch": 1.0, "loss": 1.0}]) is None


def test_plot_of_two_runs_marks_best_epochs_labels_by_differences_and_logs_losses(
        sweep_folder: Path, tmp_path: Path):
    runs = [sweep_folder / "lstm-1", sweep_folder / "gru-1"]
    output = tmp_path / "two.png"
    result = invoke("plot", *runs, "-o", output)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(output) and png_size(output) == (800, 500)

    ax = comparison_figure(runs, "val_loss").axes[0]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["model.cell=lstm", "model.cell=gru", "best epoch (best.keras)"]
    stars = [line for line in ax.get_lines() if line.get_marker() == "*" and len(line.get_xdata())]
    assert sorted(float(star.get_xdata()[0]) for star in stars) == sorted(
        float(best_epoch(run, read_metrics(run))) for run in runs)
    assert ax.get_yscale() == "linear"  # tiny runs barely move

    falling = tmp_path / "falling"  # the same run, had its loss fallen from 40 to 0.2
    shutil.copytree(runs[0], falling)
    lines = (falling / "metrics.csv").read_text().splitlines()
    column = lines[0].split(",").index("val_loss")
    for i, value in ((1, "40.0"), (2, "0.2")):
        cells = lines[i].split(",")
        cells[column] = value
        lines[i] = ",".join(cells)
    (falling / "metrics.csv").write_text("\n".join(lines) + "\n")
    assert comparison_figure([runs[1], falling], "val_loss").axes[0].get_yscale() == "log"
    assert comparison_figure([runs[1], falling], "val_accuracy").axes[0].get_yscale() == \
        "linear"
    assert _config(falling) == _config(runs[0])
