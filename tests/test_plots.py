"""Learning-curve plots: curves.png of each run and `seqtrain plot` overlays."""

from __future__ import annotations

import io
import json
import shutil
import struct
import warnings
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
from tests.conftest import TINY, invoke, run_cli, write_config


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
                        ([sweep_folder / "gru-1", "--metric", "val_f1"], "has no 'val_f1'"),
                        ([sweep_folder, "--metric", "val_f1"], "nothing to plot"),
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
        "model.cell=lstm, model.units=8, seed=1", "model.cell=gru, model.units=32, seed=2"]
    wider = {**base, "data": {**base["data"], "columns": ["a", "b", "c"]}, "train": {"x": 1}}
    # A setting missing from one run (train.x=-) is named only when nothing else differs.
    assert legend_labels([base, wider], ["r1", "r2"]) == ["data.columns=a,b", "data.columns=a,b,c"]
    assert legend_labels([base, {**base, "train": {"x": 1}}], ["r1", "r2"]) == [
        "train.x=-", "train.x=1"]
    # A searched rate reads as the search's run directories name it: 3 significant digits.
    fast = {**base, "train": {"learning_rate": 0.0031234567}}
    assert legend_labels([fast, {**base, "train": {"learning_rate": 0.01}}], ["r1", "r2"]) == [
        "train.learning_rate=0.00312", "train.learning_rate=0.01"]
    # Nothing differs, or a single run: the run's name.
    assert legend_labels([base, dict(base)], ["r1", "r2"]) == ["r1", "r2"]
    assert legend_labels([gru], ["only"]) == ["only"]


def test_legend_labels_stay_short_and_name_experiments():
    base = {"name": "x", "seed": 1,
            "model": {"cell": "lstm", "units": 8, "dropout": 0.1, "num_layers": 1},
            "train": {"learning_rate": 0.01, "batch_size": 32, "optimizer": "adam"},
            "data": {"task": "adding", "sequence_length": 8}}
    many = {**base, "seed": 2, "model": {"cell": "gru", "units": 64, "dropout": 0.3,
                                         "num_layers": 2},
            "train": {"learning_rate": 0.1, "batch_size": 64, "optimizer": "sgd"},
            "data": {"task": "adding", "sequence_length": 50}}
    # Three settings at most, model.* before train.* before seed before data.*.
    assert legend_labels([base, many], ["r1", "r2"]) == [
        "model.cell=lstm, model.units=8, model.dropout=0.1",
        "model.cell=gru, model.units=64, model.dropout=0.3"]
    few = {**base, "seed": 2, "train": {**base["train"], "learning_rate": 0.1},
           "data": {"task": "adding", "sequence_length": 50}}
    assert legend_labels([base, few], ["r1", "r2"]) == [
        "train.learning_rate=0.01, seed=1, data.sequence_length=8",
        "train.learning_rate=0.1, seed=2, data.sequence_length=50"]
    # Other experiments (name or task differ): the name, plus two model/train settings;
    # settings only one of them has (data.shift, data.num_classes) are left out.
    digits = {"name": "digits", "seed": 1, "model": {**base["model"], "cell": "gru"},
              "train": base["train"],
              "data": {"task": "shifted_digit", "sequence_length": 6, "shift": 2,
                       "num_classes": 4}}
    assert legend_labels([base, many, digits], ["r1", "r2", "r3"]) == [
        "x: model.cell=lstm, model.units=8", "x: model.cell=gru, model.units=64",
        "digits: model.cell=gru, model.units=8"]
    renamed = {**digits, "name": "x"}  # same name, other task: the task tells them apart
    assert legend_labels([base, renamed], ["r1", "r2"]) == [
        "x (adding): model.cell=lstm", "x (shifted_digit): model.cell=gru"]
    # Labels that would be the same get one more setting; a long label is cut.
    twin = {**base, "name": "y", "data": {"task": "adding", "sequence_length": 9}}
    assert legend_labels([base, twin, {**twin, "seed": 5}], ["a", "b", "c"]) == [
        "x: seed=1", "y: seed=1", "y: seed=5"]
    long = {**base, "model": {**base["model"], "cell": "a_rather_long_cell_name" * 4}}
    labels = legend_labels([base, long], ["r1", "r2"])
    assert len(labels[1]) == 60 and labels[1].endswith("…")


def test_a_crowded_legend_goes_below_the_axes_without_a_layout_warning(sweep_folder: Path,
                                                                        tmp_path: Path):
    runs = []
    for i in range(12):  # twelve runs of as many experiments with long names and settings
        run = tmp_path / f"run-{i}"
        shutil.copytree(sweep_folder / "lstm-1", run)
        config = _config(run)
        config["name"] = f"an-experiment-with-a-long-descriptive-name-number-{i}"
        config["model"]["units"] = 8 + i
        config["train"]["learning_rate"] = 0.001 * (i + 1)
        config["data"] = {"task": "adding" if i % 2 else "shifted_digit", "extra": i}
        import yaml

        (run / "config.yaml").write_text(yaml.safe_dump(config))
        runs.append(run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = comparison_figure(runs, "val_loss")
        figure.savefig(io.BytesIO(), format="png")
    assert not [str(w.message) for w in caught]
    legend = figure.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == 13 and all(len(t) <= 60 for t in texts)
    ax = figure.axes[0]
    assert legend.get_window_extent().y1 <= ax.get_window_extent().y0  # below the axes
    assert ax.get_window_extent().height > 200  # the axes keep their size


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
    legend = [text.get_text() for text in ax.figure.legends[0].get_texts()]
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


@pytest.fixture(scope="module")
def mixed_folder(sweep_folder: Path, tmp_path_factory) -> tuple[Path, object]:
    """runs/: two classification runs, a regression run, and one stopped in its first epoch.

    Returns the folder and the finished process of the stopped run (its stderr).
    """
    folder = tmp_path_factory.mktemp("mixed") / "runs"
    for run in ("lstm-1", "gru-1"):
        shutil.copytree(sweep_folder / run, folder / run)
    adding = write_config(folder.parent, {
        **TINY, "name": "sums", "data": {"task": "adding", "sequence_length": 6,
                                         "num_samples": 240}, "train": {"epochs": 1}},
        name="adding.yaml")
    result = invoke("run", adding, "--run-dir", folder / "sums", "--quiet")
    assert result.exit_code == 0, result.stderr
    # A real SIGTERM at the run's first mid-epoch backup: interrupted in epoch 1.
    stopped = write_config(folder.parent, {**TINY, "train": {
        "epochs": 2, "batch_size": 32, "steps_per_execution": 1, "backup_every_steps": 2}},
        name="stopped.yaml")
    proc = run_cli("run", stopped, "--run-dir", folder / "stopped",
                   env={"SEQTRAIN_FAULT": "term:resume.json:1"})
    assert proc.returncode == 143, proc.stderr
    return folder, proc


def test_a_run_interrupted_in_its_first_epoch_reports_a_line_not_an_empty_table(mixed_folder):
    folder, proc = mixed_folder
    summary = json.loads((folder / "stopped" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_run"] == 0
    assert "tiny: no epoch finished" in proc.stderr
    assert "┃ metric" not in proc.stderr and "final (epoch" not in proc.stderr
    assert f"seqtrain resume {folder / 'stopped'}" in proc.stderr  # the resume hint stays
    assert not (folder / "stopped" / "curves.png").exists()  # drawn once an epoch finished


def test_plotting_a_folder_skips_runs_it_cannot_plot_with_one_line_each(mixed_folder,
                                                                        tmp_path: Path):
    folder, _ = mixed_folder
    output = tmp_path / "loss.png"
    result = invoke("plot", folder, "-o", output)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(output) and output.is_file()
    assert result.stderr.splitlines() == [
        f"skipped {folder / 'stopped'}: no finished epoch yet"]

    result = invoke("plot", folder, "-o", tmp_path / "accuracy.png", "--metric", "val_accuracy")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"skipped {folder / 'stopped'}: no finished epoch yet",
        f"skipped {folder / 'sums'}: no 'val_accuracy' (a regression run)"]
    assert "UserWarning" not in result.stderr  # runs of two experiments: a tidy legend

    # Named on the command line, the unfinished run is still an error; so is a folder of
    # nothing plottable.
    named = invoke("plot", folder / "stopped", "-o", tmp_path / "x.png")
    assert named.exit_code == 2 and "has not finished an epoch" in named.stderr
    nothing = invoke("plot", folder, "-o", tmp_path / "x.png", "--metric", "val_f1")
    assert nothing.exit_code == 2 and "nothing to plot" in nothing.stderr
    skipped = [line for line in nothing.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 4 and "Traceback" not in nothing.stderr
    assert f"skipped {folder / 'sums'}: no 'val_f1' (it has loss, mae" in nothing.stderr
    assert not (tmp_path / "x.png").exists()


def test_runs_of_one_epoch_get_whole_epoch_ticks(mixed_folder):
    folder, _ = mixed_folder
    figure = comparison_figure([folder / "sums"], "val_loss")
    figure.savefig(io.BytesIO(), format="png")
    ax = figure.axes[0]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks == [1.0]
