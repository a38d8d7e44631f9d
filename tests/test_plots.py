"""Learning-curve plots: curves.png of each run and `seqtrain plot` overlays."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

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
