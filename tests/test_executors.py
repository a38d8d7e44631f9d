"""Where sweep trials run: option checks, time estimates, and a real 4-trial sweep on Ray."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, invoke, run_cli, write_config

GRID = ("--grid", "model.cell=lstm,gru", "--seeds", "2")


def test_ray_without_ray_installed_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = invoke("sweep", write_config(tmp_path), *GRID, "--executor", "ray",
                    "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "pip install 'seqtrain[ray]'" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args,message", [
    (("--executor", "slurm"), "--executor got 'slurm'; expected local or ray"),
    (("--address", "10.0.0.1:6379"), "--address and --gpus-per-trial are for --executor ray"),
    (("--executor", "ray", "--cpus-per-trial", "0"), "expected > 0 CPUs"),
    (("--measure",), "use it with --dry-run"),
    (("--executor", "ray", "--jobs", "2"), "--jobs 2 is for --executor local"),
])
def test_executor_options_that_cannot_work_are_exit_2(tmp_path, args, message):
    result = invoke("sweep", write_config(tmp_path), *GRID, *args, "--runs-dir",
                    tmp_path / "runs")
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


def test_dry_run_measure_estimates_each_distinct_trial_and_the_sweep(tmp_path):
    result = invoke("sweep", write_config(tmp_path), *GRID, "--dry-run", "--measure",
                    "--jobs", "2", "--json", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.stdout)
    seconds = {t["trial"]: t["estimated_seconds"] for t in listed["trials"]}
    assert all(s > 0 for s in seconds.values())
    # Seeds share a measurement: the same config but for the seed costs the same.
    assert seconds["cell=lstm.seed=7"] == seconds["cell=lstm.seed=8"]
    estimate = listed["estimate"]
    assert estimate["total_seconds"] == pytest.approx(sum(estimate["trial_seconds"]))
    assert estimate["total_seconds"] / 2 <= estimate["wall_seconds"] < estimate["total_seconds"]
    assert "estimate:" in result.stderr and not (tmp_path / "runs").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray cluster of one node with 2 CPUs, as `ray start --head` makes one."""
    pytest.importorskip("ray")
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # what the workers' trials import
    subprocess.run([ray_cli, "start", "--head", "--num-cpus", "2", "--port", str(port),
                    "--include-dashboard", "false", "--disable-usage-stats"],
                   env=env, check=True, capture_output=True, timeout=300)
    yield f"127.0.0.1:{port}"
    subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=300)


@pytest.mark.slow
def test_a_sweep_on_ray_runs_every_trial_into_the_shared_folder(ray_cluster, tmp_path):
    config = write_config(tmp_path, {**TINY, "model": {"cell": "lstm", "units": 8}})
    args = ("sweep", config, *GRID, "--executor", "ray", "--address", ray_cluster,
            "--cpus-per-trial", "1", "--runs-dir", tmp_path / "runs", "--name", "on-ray",
            "--json")
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "runs" / "on-ray"
    results = json.loads(result.stdout)
    assert [r["status"] for r in results] == ["completed"] * 4
    lines = [json.loads(line) for line in (folder / "sweep.jsonl").read_text().splitlines()]
    assert sorted(r["trial"] for r in lines) == sorted(r["trial"] for r in results)
    assert {r["executor"] for r in lines} == {"ray"}
    for trial in results:
        summary = json.loads((Path(trial["run_dir"]) / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["test"]
    assert json.loads((folder / "sweep.json").read_text())["seeds"] == 2
    again = run_cli(*args)  # the same command again: nothing left to run
    assert again.returncode == 0, again.stderr
    assert {r["action"] for r in json.loads(again.stdout)} == {"skip"}


@pytest.mark.slow
def test_a_search_on_ray_runs_its_trials_into_the_shared_folder(ray_cluster, tmp_path):
    from tests.test_search import needs_optuna

    needs_optuna()
    config = write_config(tmp_path, {**TINY, "model": {"cell": "lstm", "units": 8}})
    args = ("sweep", config, "--search", "tpe", "--trials", "3", "--space",
            "train.learning_rate=float(1e-3,5e-2,log)", "--prune", "none", "--executor", "ray",
            "--address", ray_cluster, "--cpus-per-trial", "1", "--runs-dir", tmp_path / "runs",
            "--name", "search-on-ray", "--json")
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [t["state"] for t in report["trials"]] == ["complete"] * 3
    assert {r["executor"] for r in report["results"]} == {"ray"}
    assert report["best"]["config"] and Path(report["best"]["config"]).is_file()
