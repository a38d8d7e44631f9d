"""The benchmark scripts run and report what they promise (speeds are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_throughput_reports_every_variant_and_ratio(tmp_path):
    out = tmp_path / "throughput.json"
    result = subprocess.run([sys.executable, "benchmarks/throughput.py", "--repeats", "1",
                             "--epochs", "2", "--samples", "640", "--cells", "gru", "--out",
                             str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    gru = report["throughput"]["gru"]
    assert {"A", "B", "B_same", "C"} <= set(gru["sequences_per_second"])
    assert gru["sequences_per_second"]["A"] > 0 and gru["D_matmul_gflops"] > 0
    assert gru["A/B"] > 0 and gru["A/B_same"] > 0 and 0 < gru["A/D"]
    assert report["dataset_memory"]["peak_over_dataset"] < 2.0  # no second copy of the data
    assert "A/B" in result.stdout  # the table
