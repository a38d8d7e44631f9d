"""The benchmark scripts run and report what they promise (speeds are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_benchmark(script: str, out, *args: str) -> tuple[dict, str]:
    """Run benchmarks/`script` small; its JSON report and its stdout (the table)."""
    result = subprocess.run([sys.executable, f"benchmarks/{script}", *args, "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), result.stdout


@pytest.mark.slow
def test_throughput_reports_every_variant_and_ratio(tmp_path):
    report, stdout = run_benchmark("throughput.py", tmp_path / "throughput.json", "--repeats",
                                   "1", "--epochs", "2", "--samples", "640", "--cells", "gru")
    gru = report["throughput"]["gru"]
    assert {"A", "B", "B_same", "C"} <= set(gru["sequences_per_second"])
    assert gru["sequences_per_second"]["A"] > 0 and gru["D_matmul_gflops"] > 0
    assert gru["A/B"] > 0 and gru["A/B_same"] > 0 and 0 < gru["A/D"]
    (pair,) = gru["pairs"]  # A and B_same again, and B_keep, in one process
    assert pair["A"]["rate"] > 0 and pair["B_same"]["rate"] > 0 and gru["A/B_same_paired"] > 0
    assert pair["B_keep"]["rate"] > 0 and gru["A/B_keep_paired"] > 0
    assert gru["epoch_phases_ms"]["B_keep (in one process)"]["epoch_end_ms"] > 0  # its saves
    phases = gru["epoch_phases_ms"]["A"]  # where an epoch's time went
    assert phases["train_ms"] > 0 and phases["validation_ms"] > 0 and phases["epoch_end_ms"] > 0
    assert report["dataset_memory"]["peak_over_dataset"] < 2.0  # no second copy of the data
    assert "A/B" in stdout and "A/B_same in one process" in stdout and "A/B_keep" in stdout


@pytest.mark.slow
def test_epoch_stalls_reports_both_modes(tmp_path):
    report, stdout = run_benchmark("epoch_stalls.py", tmp_path / "epoch_stalls.json",
                                   "--epochs", "3", "--repeats", "1", "--units", "8",
                                   "--samples", "512")
    modes = report["modes"]
    assert set(modes) == {"autotune_on", "autotune_off"}
    assert all(mode["epochs"] == 2 and mode["median_seconds"] > 0 for mode in modes.values())
    assert "autotune_off" in stdout  # the table


@pytest.mark.slow
def test_streams_reports_each_shape_with_and_without(tmp_path):
    report, stdout = run_benchmark("streams.py", tmp_path / "streams.json", "--repeats", "1",
                                   "--epochs", "2", "--samples", "640", "--shapes", "gru:16:32")
    (row,) = report["shapes"]
    assert row["step_product"] == 32 * 16 * 3 * 16 and row["auto"] == 1  # too small to split
    assert all(rate > 0 for rate in row["sequences_per_second"].values())
    assert row["speed_up"] > 0 and "speed-up" in stdout  # the table


@pytest.mark.slow
def test_epoch_profile_splits_an_epoch_by_thread_and_operation(tmp_path):
    report, stdout = run_benchmark("epoch_profile.py", tmp_path / "epoch_profile.json",
                                   "--cell", "gru", "--epochs", "2", "--samples", "640")
    assert len(report["epoch_seconds"]) == 2 and report["compute_span_ms"] > 0
    overlap = report["compute_threads_busy_ms"]  # how many compute threads were busy, when
    assert abs(sum(overlap.values()) - report["compute_span_ms"]) < 1.0
    assert any(name.startswith("tf_Compute") for name in report["thread_busy_ms"])
    assert report["operation_ms"]["recurrent"] > 0 and report["operation_ms"]["outside"] > 0
    assert "recurrent MatMul" in dict(report["top_operations_ms"])  # the loops' products
    assert "while one compute thread was busy" in stdout


@pytest.mark.slow
def test_predict_reports_the_model_phase_against_keras_and_the_files_apart(tmp_path):
    report, stdout = run_benchmark("predict.py", tmp_path / "predict.json", "--sequences",
                                   "2000", "--repeats", "1")
    assert set(report["model_seconds"]) == {"seqtrain", "keras", "keras_32"}
    assert report["ratio_to_keras"] > 0 and report["read_seconds"] > 0
    assert report["write_npz_seconds"] > 0 and report["write_csv_seconds_per_1000_sequences"] > 0
    assert report["command_one_sequence_seconds"] > 0
    assert "seqtrain / keras speed" in stdout


@pytest.mark.slow
def test_search_vs_grid_spends_no_more_epochs_than_the_grid(tmp_path):
    report, stdout = run_benchmark("search_vs_grid.py", tmp_path / "search.json", "--epochs",
                                   "4", "--sequence-length", "5", "--samples", "200",
                                   "--runs-dir", str(tmp_path / "runs"))
    grid, search = report["grid"], report["search"]
    assert grid["trials"] == 8 and grid["pruned"] == 0 and 0 < grid["epochs"] <= 32
    # Drawn while a whole trial fits: never over the grid's epochs, and no room left.
    assert grid["epochs"] - 4 < search["epochs"] <= grid["epochs"]
    assert search["trials"] >= 8 and search["test_mse"] > 0 and grid["test_mse"] > 0
    assert 0 <= search["epochs_saved_by_pruner"] <= 2 * search["pruned"]  # from epoch 2 on
    assert "| grid | 8 |" in stdout and "| TPE search |" in stdout
