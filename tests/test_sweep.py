"""Sweeps with real processes: shell loops, `seqtrain sweep`, concurrency, resume, shards."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqtrain.errors import SeqtrainError
from seqtrain.rundir import run_stem
from seqtrain.sweep import (
    COMPARED,
    Trial,
    compare,
    comparison_table,
    expand,
    parse_columns,
    parse_grid,
    parse_shard,
    plan_sweep,
    shard,
    table_columns,
)
from tests.conftest import ROOT, TINY, invoke, write_config

BIN = Path(sys.executable).parent  # where the `seqtrain` console script is installed
QUICK = {**TINY, "train": {"epochs": 1, "batch_size": 32}}


def seqtrain(*args, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqtrain", *map(str, args)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          capture_output=True, text=True, timeout=600, **kwargs)


def jsonl(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "sweep.jsonl").read_text().splitlines()]


def test_run_directories_are_named_after_their_overrides():
    assert run_stem("shifted-digit-lstm", ["model.cell=gru", "model.units=64"]) == \
        "shifted-digit-lstm.cell=gru.units=64"
    assert run_stem("x", ["name=y", "data.split={train: 0.7}"]) == "x.split=_train_0.7_"
    long = run_stem("x", [f"model.units={i}" for i in range(50)])
    assert len(long) == 120 and long != run_stem("x", [f"model.units={i}" for i in range(51)])


def test_the_grid_is_a_cartesian_product_times_seeds():
    grid = parse_grid(["model.cell=simple_rnn,lstm,gru", "model.units=32,64"])
    trials = expand(grid, seeds=2, base_seed=42)
    assert len(trials) == 12
    assert trials[0].overrides == ("model.cell=simple_rnn", "model.units=32", "seed=42")
    assert trials[-1].stem == "cell=gru.units=64.seed=43"
    assert len({t.stem for t in trials}) == 12
    assert trials[0].group == trials[1].group == ("model.cell=simple_rnn", "model.units=32")
    assert expand(grid, seeds=1, base_seed=42)[0].overrides == ("model.cell=simple_rnn",
                                                                  "model.units=32")
    for bad in (["model.cell"], ["model.cell="], ["a=1", "a=2"]):
        with pytest.raises(SeqtrainError):
            parse_grid(bad)


def test_shards_are_disjoint_and_cover_the_grid():
    trials = [Trial(i, (f"seed={i}",)) for i in range(11)]
    for count in (1, 2, 3, 11, 12):
        parts = [shard(trials, index, count) for index in range(1, count + 1)]
        indices = [t.index for part in parts for t in part]
        assert sorted(indices) == list(range(11))
    for bad in ("0/2", "3/2", "1", "a/b", "1/0"):
        with pytest.raises(SeqtrainError, match="expected I/N"):
            parse_shard(bad)


def test_dry_run_shards_through_the_cli_and_writes_nothing(tmp_path: Path):
    config = write_config(tmp_path, QUICK)
    grid = ["--grid", "model.cell=simple_rnn,lstm,gru", "--grid", "model.units=8,16"]
    seen = []
    for index in (1, 2, 3):
        result = invoke("sweep", config, *grid, "--seeds", "2", "--runs-dir", tmp_path / "runs",
                        "--shard", f"{index}/3", "--dry-run", "--json")
        assert result.exit_code == 0, result.stderr
        seen += [t["run_dir"] for t in json.loads(result.stdout)]
    assert len(seen) == len(set(seen)) == 12
    assert not (tmp_path / "runs").exists()


def test_a_bad_trial_is_exit_2_before_anything_runs(tmp_path: Path):
    config = write_config(tmp_path, QUICK)
    result = invoke("sweep", config, "--grid", "model.cell=lstm,lstn", "--runs-dir",
                    tmp_path / "runs")
    assert result.exit_code == 2
    assert "trial cell=lstn" in result.stderr and "Did you mean 'lstm'" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # many real processes; CI runs the slow set too
def test_eight_runs_started_at_once_get_eight_directories(tmp_path: Path):
    config = write_config(tmp_path, QUICK)
    runs = tmp_path / "runs"
    procs = [subprocess.Popen([sys.executable, "-m", "seqtrain", "run", str(config), "--runs-dir",
                               str(runs), "--quiet", "--json"], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8, [err for _, err in outputs]
    dirs = {json.loads(out)["run_dir"] for out, _ in outputs}
    assert len(dirs) == 8 and len(list(runs.iterdir())) == 8
    for run_dir in dirs:
        assert json.loads((Path(run_dir) / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow  # four trials, twice; test_sweep_quiet_... trains one in the default set
def test_a_sweep_with_two_jobs_then_a_rerun_skips_what_completed(tmp_path: Path):
    config = write_config(tmp_path, QUICK)
    args = ["sweep", config, "--grid", "model.cell=lstm,gru", "--seeds", "2", "--jobs", "2",
            "--runs-dir", tmp_path / "runs", "--name", "cells"]
    result = seqtrain(*args)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "runs" / "cells"
    assert result.stdout.strip() == str(folder)
    lines = jsonl(folder)
    assert sorted(line["trial"] for line in lines) == [
        "cell=gru.seed=7", "cell=gru.seed=8", "cell=lstm.seed=7", "cell=lstm.seed=8"]
    assert {line["status"] for line in lines} == {"completed"}
    assert all(line["best_val_loss"] > 0 and line["exit_code"] == 0 for line in lines)
    # `tensorboard --logdir` names a run by the folder of its event files: one per trial.
    boards = {str(p.parent.relative_to(folder)) for p in folder.rglob("events.out.tfevents.*")}
    assert boards == {f"{line['trial']}/tensorboard/{split}" for line in lines
                      for split in ("train", "validation")}
    assert "mean ± std across seeds" in result.stderr and "model.cell=gru" in result.stderr
    again = seqtrain(*args)
    assert again.returncode == 0
    assert [line["action"] for line in jsonl(folder)[4:]] == ["skip"] * 4
    other = seqtrain(*args, "--grid", "model.units=8,16")
    said = " ".join(other.stderr.split())
    assert other.returncode == 2 and "holds a different sweep (grid: " in said
    assert "model.units" in said and " now)" in said  # what differs, there and now


@pytest.mark.slow  # two sweeps; CI runs the slow set too
def test_a_trial_killed_as_its_folder_was_made_is_run_again(tmp_path: Path):
    # Killed before its config was written: a folder that `resume` cannot use and that no
    # process holds. The sweep's re-run starts that trial over.
    config = write_config(tmp_path, QUICK)
    args = ["sweep", config, "--grid", "model.units=8", "--runs-dir", tmp_path / "runs",
            "--name", "orphan"]
    killed = seqtrain(*args, env={"SEQTRAIN_FAULT": "kill:config.yaml:1"})
    trial = tmp_path / "runs" / "orphan" / "units=8"
    assert killed.returncode != 0 and trial.is_dir() and not (trial / "config.yaml").exists()
    again = seqtrain(*args)
    assert again.returncode == 0, again.stderr
    last = jsonl(tmp_path / "runs" / "orphan")[-1]
    assert (last["action"], last["status"]) == ("run", "completed"), last
    assert not list(trial.rglob(".*"))


@pytest.mark.slow  # many real processes; CI runs the slow set too
def test_one_failing_trial_does_not_stop_the_others_and_failed_ones_retry(tmp_path: Path):
    config = write_config(tmp_path, QUICK)
    args = ["sweep", config, "--grid", "model.units=8,16", "--runs-dir", tmp_path / "runs",
            "--name", "faulty"]
    # Every trial's first checkpoint write fails as on a full disk.
    failing = seqtrain(*args, env={"SEQTRAIN_FAULT": "enospc:state-e0001-s000000:1"})
    assert failing.returncode == 1
    folder = tmp_path / "runs" / "faulty"
    assert {line["status"] for line in jsonl(folder)} == {"failed"}
    assert "did not complete" in failing.stderr
    skipped = seqtrain(*args)
    assert skipped.returncode == 1 and [line["action"] for line in jsonl(folder)[2:]] == [
        "skip", "skip"]
    retried = seqtrain(*args, "--retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert [line["status"] for line in jsonl(folder)[4:]] == ["completed", "completed"]


@pytest.mark.slow  # many real processes; CI runs the slow set too
def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path: Path):
    config = write_config(tmp_path, {**QUICK, "data": {**QUICK["data"], "num_samples": 3000},
                                     "train": {"epochs": 3, "batch_size": 32,
                                               "steps_per_execution": 1}})
    args = ["sweep", str(config), "--grid", "model.units=8,16,24", "--runs-dir",
            str(tmp_path / "runs"), "--name", "stopped"]
    proc = subprocess.Popen([sys.executable, "-m", "seqtrain", *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = tmp_path / "runs" / "stopped" / "units=8" / "metrics.csv"
    deadline = time.monotonic() + 300
    while not first.exists():  # the first trial has finished an epoch
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    lines = jsonl(tmp_path / "runs" / "stopped")
    if all(line["status"] == "completed" for line in lines):
        pytest.skip("the sweep finished before the signal arrived")
    assert proc.returncode == 130, err
    assert {line["status"] for line in lines} <= {"completed", "interrupted", "not started"}
    assert any(line["status"] == "interrupted" for line in lines)
    again = seqtrain(*args)
    assert again.returncode == 0, again.stderr
    final = {line["trial"]: line for line in jsonl(tmp_path / "runs" / "stopped")[len(lines):]}
    assert {t: line["status"] for t, line in final.items()} == {
        "units=8": "completed", "units=16": "completed", "units=24": "completed"}
    assert final["units=8"]["action"] in ("resume", "skip")


@pytest.mark.slow  # four real runs through bash; CI runs the slow set too
def test_the_shell_sweep_example_runs_and_skips_completed_runs(tmp_path: Path):
    config = write_config(tmp_path, QUICK)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "CONFIG": str(config), "CELLS": "lstm gru", "UNITS": "8", "EPOCHS": "1",
           "SAMPLES": "200", "RUNS": str(tmp_path / "runs")}
    script = ROOT / "examples" / "sweep.sh"
    first = subprocess.run(["bash", str(script)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "cell=gru.units=8", "cell=lstm.units=8"]
    assert "cell=lstm.units=8" in first.stdout and "completed" in first.stdout  # seqtrain ls
    second = subprocess.run(["bash", str(script)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 0
    assert second.stderr.count(": completed") == 2  # both skipped


def test_ctrl_c_records_the_running_trial_as_interrupted_and_says_how_to_resume(
        tmp_path: Path):
    config = write_config(tmp_path, QUICK)
    args = ["sweep", config, "--grid", "model.units=8,16", "--runs-dir", tmp_path / "runs",
            "--name", "stopped"]
    proc = subprocess.Popen([sys.executable, "-m", "seqtrain", *map(str, args)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # the sweep says when it starts a trial: Ctrl-C right then
        seen.append(line)
        if line.startswith("units=8: starting"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=600)
    err = "".join(seen) + err
    assert proc.returncode == 130, err
    folder = tmp_path / "runs" / "stopped"
    # Stopped before its run wrote anything (or after): `interrupted`, never `run`; the
    # next trial is not started at all.
    assert {line["trial"]: line["status"] for line in jsonl(folder)} == {
        "units=8": "interrupted", "units=16": "not started"}, err
    assert not (folder / "units=16").exists()
    assert "sweep interrupted (SIGINT; stopped units=8); run the same command again to " \
           "resume it:" in err and "seqtrain sweep " in err
    assert out.strip() == str(folder)
    again = seqtrain(*args, "--dry-run", "--json")  # what re-running it would do
    assert again.returncode == 0, again.stderr
    assert {t["trial"]: t["action"] for t in json.loads(again.stdout)} == {
        "units=8": "run" if not (folder / "units=8" / "config.yaml").exists() else "resume",
        "units=16": "run"}


def test_sweep_quiet_and_a_results_table_never_cut_to_80_columns(tmp_path: Path):
    config = write_config(tmp_path, QUICK)
    args = ["sweep", config, "--grid", "model.units=8", "--runs-dir", tmp_path / "runs",
            "--name", "quiet"]
    quiet = seqtrain(*args, "--quiet", env={"COLUMNS": "80"})
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and quiet.stdout.strip() == str(tmp_path / "runs" / "quiet")
    assert jsonl(tmp_path / "runs" / "quiet")[0]["status"] == "completed"
    default = seqtrain(*args, env={"COLUMNS": "80"})  # skips the completed trial
    assert "best_val_accuracy" in default.stderr and "test_mse" not in default.stderr
    wide = seqtrain(*args, "--columns", ",".join(COMPARED), env={"COLUMNS": "80"})
    assert wide.returncode == 0, wide.stderr
    assert "…" not in wide.stderr and all(name in wide.stderr for name in COMPARED)
    assert max(len(line) for line in wide.stderr.splitlines()) > 150
    bad = seqtrain(*args, "--columns", "best_val_los")
    assert bad.returncode == 2 and "unknown column 'best_val_los'" in bad.stderr
    assert "Did you mean 'best_val_loss'" in bad.stderr


def comparison_row(trial: str, kinds: list[str], **values) -> dict:
    row = {"trial": trial, "runs": 2, "kinds": kinds}
    for column in COMPARED:
        row[column], row[f"{column}_std"] = values.get(column), None
    return row


def test_the_results_table_follows_the_trials_kind_of_task():
    from rich.console import Console

    regression = [comparison_row("model.units=8", ["regression"], best_val_loss=0.5,
                                 best_val_mse=0.5, best_val_mae=0.6, test_mse=0.55,
                                 test_mae=0.61)]
    classification = [comparison_row("model.units=16", ["classification"], best_val_loss=1.2,
                                     best_val_accuracy=0.8, test_accuracy=0.79)]
    assert table_columns(regression) == ["best_val_loss", "best_val_mse", "best_val_mae",
                                         "test_mse", "test_mae"]
    assert table_columns(classification) == ["best_val_loss", "best_val_accuracy",
                                             "test_accuracy"]
    assert table_columns(regression + classification) == [
        "best_val_loss", "best_val_accuracy", "test_accuracy", "best_val_mse", "best_val_mae",
        "test_mse", "test_mae"]
    assert table_columns([comparison_row("x", [])]) == ["best_val_loss"]  # nothing completed
    console = Console(file=io.StringIO(), width=300)
    console.print(comparison_table(regression + classification))
    text = console.file.getvalue()
    assert "0.61" in text and "0.79" in text and "test_mae" in text
    assert parse_columns(" test_mae,wall_seconds ") == ["test_mae", "wall_seconds"]
    for bad in ("test_f1", ","):
        with pytest.raises(SeqtrainError, match="--columns"):
            parse_columns(bad)


def test_an_interrupted_trial_shows_its_best_so_far_and_its_status(tmp_path: Path):
    from rich.console import Console

    config = write_config(tmp_path, QUICK)
    plan = plan_sweep(config, ["model.cell=lstm,gru,simple_rnn"], [], 1, "cells",
                      tmp_path / "runs")
    lstm, gru, rnn = (plan.run_dir(t) for t in plan.trials)
    for run, status, loss in ((lstm, "interrupted", 0.0268), (gru, "completed", 0.05)):
        run.mkdir(parents=True)  # as a run leaves it: an interrupted one has its best so far
        (run / "summary.json").write_text(json.dumps({
            "status": status, "task": {"kind": "classification"}, "epochs": 3,
            "epochs_run": 1 if status == "interrupted" else 3,
            "best": {"val_loss": loss, "val_accuracy": 1.0}, "config": QUICK}))
    rows = {row["trial"]: row for row in compare(plan)}
    assert rows["model.cell=lstm"]["status"] == "interrupted"
    assert rows["model.cell=lstm"]["runs"] == 1 and rows["model.cell=lstm"]["completed"] == 0
    assert rows["model.cell=lstm"]["best_val_loss"] == 0.0268
    assert rows["model.cell=lstm"]["best_val_accuracy"] == 1.0
    assert rows["model.cell=gru"]["status"] == "completed"
    assert rows["model.cell=simple_rnn"]["status"] == "not run"
    assert rows["model.cell=simple_rnn"]["runs"] == 0
    console = Console(file=io.StringIO(), width=300)
    console.print(comparison_table(list(rows.values())))
    text = console.file.getvalue()
    assert "best_val_accuracy" in text and "status" in text  # the kind's columns stay
    line = next(line for line in text.splitlines() if "model.cell=lstm" in line)
    assert "interrupted" in line and "0.0268" in line and "1 " in line
