"""`seqtrain sweep --search`: Optuna studies of real tiny runs, pruning, resume, best config.

The studies need Optuna (the `search` extra) and train for real, so they are marked slow:
CI installs the extra and runs them; SEQTRAIN_REQUIRE_EXTRAS turns a missing Optuna into a
failure there. Parsing and refusing bad input needs no Optuna and runs by default.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from seqtrain.errors import SeqtrainError
from seqtrain.study import Param, parse_space
from tests.conftest import ROOT, TINY, invoke, write_config
from tests.test_sweep import jsonl, seqtrain

QUICK = {**TINY, "train": {"epochs": 3, "batch_size": 32}}
SPACE = ("--space", "train.learning_rate=float(1e-3,5e-2,log)", "--space", "model.units=int(4,12)")


def test_a_search_space_reads_the_four_forms():
    assert parse_space(["train.learning_rate=float(1e-4, 1e-2, log)", "model.units=int(8,64)",
                        "model.cell=choice(lstm,gru)", "train.clipnorm=float(0.5,5)"]) == [
        Param("train.learning_rate", "float", 1e-4, 1e-2, True),
        Param("model.units", "int", 8, 64),
        Param("model.cell", "choice", choices=("lstm", "gru")),
        Param("train.clipnorm", "float", 0.5, 5.0)]
    assert Param("model.units", "int", 8, 64).spec == "model.units=int(8,64)"
    assert Param("train.learning_rate", "float", 1e-4, 1e-2, True).override(0.00123456789) == \
        "train.learning_rate=0.00123456789"


@pytest.mark.parametrize(("spec", "says"), [
    ("train.learning_rate=uniform(0,1)", "expected KEY=SPEC with SPEC one of float(lo,hi)"),
    ("train.learning_rate=float(1e-2,1e-4)", "lo < hi; got 1e-2 and 1e-4"),
    ("train.learning_rate=float(0,1,log)", "a log scale needs lo > 0; got 0"),
    ("model.units=int(8.5,64)", "int(lo,hi) needs integers as bounds; got 8.5 and 64"),
    ("model.cell=choice(lstm,lstm)", "choice(...) needs two or more distinct, non-empty"),
    ("model.units=choice(8)", "a single value is a --set"),
    ("model.units", "expected KEY=SPEC"),
])
def test_a_bad_spec_is_named_with_what_is_allowed(spec, says):
    with pytest.raises(SeqtrainError, match="--space") as err:
        parse_space([spec])
    assert spec in str(err.value) and says in str(err.value)


def test_a_bad_spec_or_a_refused_bound_is_exit_2_and_writes_nothing(tmp_path: Path):
    config = write_config(tmp_path, QUICK)
    runs = tmp_path / "runs"
    base = ("sweep", config, "--search", "tpe", "--trials", "4", "--runs-dir", runs)
    bad = invoke(*base, "--space", "train.learning_rate=float(1e-2,1e-4)")
    assert bad.exit_code == 2 and "--space 'train.learning_rate=float(1e-2,1e-4)'" in bad.stderr
    refused = invoke(*base, "--space", "model.units=int(0,8)")
    assert refused.exit_code == 2, refused.stderr
    assert "--space model.units=int(0,8): model.units" in refused.stderr
    unknown = invoke(*base, "--space", "model.unit=int(4,8)")
    assert unknown.exit_code == 2 and "model.unit" in unknown.stderr
    assert unknown.stderr.count("unknown key") == 1 and "--set" not in unknown.stderr
    listed = invoke(*base, "--space", "model.units=choice(8,16,[4,4])")
    assert listed.exit_code == 2 and "choice(...) takes plain values" in listed.stderr
    both = invoke(*base, *SPACE, "--set", "model.units=4")
    assert both.exit_code == 2
    assert "model.units is also set by --set model.units=4" in both.stderr
    inside = invoke(*base, *SPACE, "--set", "train.early_stopping=null", "--space",
                    "train.early_stopping.patience=int(1,3)")
    assert inside.exit_code == 2
    assert "is also set by --set train.early_stopping=null" in inside.stderr
    monitor = invoke(*base, *SPACE, "--set", "train.monitor=val_loss", "--objective",
                     "val_accuracy")
    assert monitor.exit_code == 2 and "give only --objective" in monitor.stderr
    direction = invoke(*base, *SPACE, "--direction", "max")
    assert direction.exit_code == 2
    assert "--direction max: val_loss is minimised" in direction.stderr
    objective = invoke(*base, *SPACE, "--objective", "val_f1")
    assert objective.exit_code == 2 and "--objective got 'val_f1'" in objective.stderr
    (tmp_path / "sine").mkdir()
    sine = write_config(tmp_path / "sine", {**QUICK, "data": {"task": "sine", "num_samples": 100}})
    other_kind = invoke("sweep", sine, *base[2:], *SPACE, "--objective", "val_accuracy")
    assert other_kind.exit_code == 2, other_kind.stderr
    assert "--objective got 'val_accuracy'; an epoch metric: task 'sine' (regression) logs " \
        "val_loss, val_mae, val_mse" in other_kind.stderr
    assert "Traceback" not in bad.stderr + refused.stderr + unknown.stderr
    assert not runs.exists()


@pytest.mark.parametrize(("extra", "says"), [
    (("--grid", "model.units=4,8"), "--grid does not apply to --search"),
    (("--seeds", "3"), "--seeds does not apply to --search"),
    (("--shard", "1/2"), "--shard does not apply to --search"),
    (("--retry-failed",), "--retry-failed does not apply to --search"),
])
def test_grid_options_that_mean_nothing_to_a_search_are_refused(tmp_path, extra, says):
    config = write_config(tmp_path, QUICK)
    result = invoke("sweep", config, "--search", "tpe", "--trials", "2", *SPACE, *extra,
                    "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and says in result.stderr


def test_search_options_without_search_say_to_add_it(tmp_path: Path):
    config = write_config(tmp_path, QUICK)
    result = invoke("sweep", config, "--trials", "4", *SPACE, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert "--trials, --space belong to a search: add --search tpe" in result.stderr
    one = invoke("sweep", config, "--trials", "0", "--dry-run")
    assert one.exit_code == 2 and "--trials belongs to a search" in one.stderr
    missing = invoke("sweep", config, "--search", "tpe", *SPACE)
    assert missing.exit_code == 2 and "--search needs --trials N" in missing.stderr


def test_without_optuna_a_search_says_how_to_install_it(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    config = write_config(tmp_path, QUICK)
    result = invoke("sweep", config, "--search", "tpe", "--trials", "2", *SPACE,
                    "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.stderr
    assert "pip install 'seqtrain[search]'" in result.stderr
    assert not (tmp_path / "runs").exists()


def needs_optuna():
    """Optuna, or a skip (a failure where CI installed the extras)."""
    try:
        import optuna
    except ImportError:
        if os.environ.get("SEQTRAIN_REQUIRE_EXTRAS"):
            pytest.fail("SEQTRAIN_REQUIRE_EXTRAS is set but Optuna is not installed")
        pytest.skip("the search extra (Optuna) is not installed")
    return optuna


def study_of(folder: Path):
    optuna = needs_optuna()
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    return optuna.load_study(study_name="seqtrain", storage=storage)


def epochs_of(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


@pytest.mark.slow
def test_a_four_trial_study_with_two_jobs_and_its_best_config(tmp_path: Path):
    needs_optuna()
    config = write_config(tmp_path, QUICK)
    args = ["sweep", config, "--search", "random", "--trials", "4", "--jobs", "2", *SPACE,
            "--runs-dir", tmp_path / "runs", "--name", "study"]
    first = seqtrain(*args)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "runs" / "study"
    assert first.stdout.strip() == str(folder)
    study = study_of(folder)
    assert [t.state.name for t in study.trials].count("RUNNING") == 0
    assert len(study.trials) == 4
    runs = sorted(p.name for p in folder.iterdir() if (p / "config.yaml").exists())
    assert [name[:4] for name in runs] == ["000.", "001.", "002.", "003."]
    for trial in study.trials:
        run_dir = next(folder.glob(f"{trial.number:03d}.*"))
        # Each epoch reported once, as metrics.csv has it; the name carries the settings.
        with open(run_dir / "metrics.csv", newline="") as file:
            losses = {int(r["epoch"]): float(r["val_loss"]) for r in csv.DictReader(file)}
        assert trial.intermediate_values == pytest.approx(losses)
        assert f"units={trial.params['model.units']}" in run_dir.name
        assert trial.user_attrs["run_dir"] == str(run_dir)
    lines = jsonl(folder)
    assert sorted(line["number"] for line in lines) == [0, 1, 2, 3]
    assert {line["status"] for line in lines} <= {"completed", "pruned"}
    # The last epoch is reported but never pruned: a trial that ran it has completed.
    assert all(line["epochs_run"] < 3 for line in lines if line["status"] == "pruned")
    best = study.best_trial
    assert f"best trial: {best.number:03d}." in first.stderr
    assert "importances (PED-ANOVA over " in first.stderr or "importances: not computed (needs 2" \
        in first.stderr
    # The best config is the best trial's own, and `seqtrain run` takes it.
    best_yaml = folder / "best.yaml"
    best_run = next(folder.glob(f"{best.number:03d}.*"))
    loaded = yaml.safe_load(best_yaml.read_text())
    assert loaded == yaml.safe_load((best_run / "config.yaml").read_text())
    assert loaded["model"]["units"] == best.params["model.units"]
    assert loaded["train"]["learning_rate"] == best.params["train.learning_rate"]
    rerun = seqtrain("run", best_yaml, "--set", "train.epochs=1", "--runs-dir", tmp_path / "x",
                     "--quiet")
    assert rerun.returncode == 0, rerun.stderr
    # ls and eval read the trials as any runs.
    listed = invoke("ls", folder, "--format", "json")
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 4
    evaluated = invoke("eval", best_run, "--json", "--quiet")
    assert evaluated.exit_code == 0, evaluated.stderr
    # The same command again: the study is complete, nothing trains.
    again = seqtrain(*args)
    assert again.returncode == 0, again.stderr
    assert "starting" not in again.stderr and len(study_of(folder).trials) == 4
    journal = (folder / "study.journal").read_bytes()
    shown = seqtrain(*args, "--dry-run", "--json")
    assert shown.returncode == 0, shown.stderr
    assert (folder / "study.journal").read_bytes() == journal  # a dry run writes nothing
    assert "the study holds 4 trials; the same command without --dry-run would draw none" \
        in " ".join(shown.stderr.split())
    report = json.loads(shown.stdout)
    assert report["best"]["number"] == best.number
    assert report["best"]["sets"][-2:] == [
        f"train.learning_rate={best.params['train.learning_rate']!r}",
        f"model.units={best.params['model.units']}"]
    assert set(report["importances"]) == {"train.learning_rate", "model.units"}


@pytest.mark.slow
def test_ctrl_c_stops_the_search_and_the_same_command_resumes_it(tmp_path: Path):
    needs_optuna()
    config = write_config(tmp_path, {**QUICK, "train": {"epochs": 6, "batch_size": 16}})
    args = ["sweep", config, "--search", "tpe", "--trials", "4", "--jobs", "2", *SPACE,
            "--prune", "none", "--runs-dir", tmp_path / "runs", "--name", "stopped"]
    folder = tmp_path / "runs" / "stopped"
    proc = subprocess.Popen([sys.executable, "-m", "seqtrain", *map(str, args)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(folder.glob("00[01].*/metrics.csv")):  # a trial has finished an epoch
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err
    assert "search interrupted (SIGINT" in err and "run the same command again" in err
    stopped = [t for t in study_of(folder).trials if t.state.name == "RUNNING"]
    assert stopped, "Ctrl-C stopped no trial"
    again = seqtrain(*args)
    assert again.returncode == 0, again.stderr
    study = study_of(folder)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    resumed = {line["number"]: line["action"] for line in jsonl(folder)
               if line["status"] == "completed"}
    for trial in stopped:
        run_dir = next(folder.glob(f"{trial.number:03d}.*"))
        assert resumed[trial.number] in ("run", "resume")
        # Every epoch once, and reported once: no gap and no repeat across the stop.
        assert epochs_of(run_dir) == [1, 2, 3, 4, 5, 6]
        assert sorted(study.trials[trial.number].intermediate_values) == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_a_trial_behind_the_median_is_pruned_resumably(tmp_path: Path):
    needs_optuna()
    config = write_config(tmp_path, {**QUICK, "train": {"epochs": 4, "batch_size": 32}})
    # The random sampler with the config's seed (7) draws 1e-5, 1e-5, 0.05, 0.05, 1e-5,
    # 1e-5: once two good trials completed, a trial that learns nothing falls behind the
    # median at epoch 2 (the first after the warm-up epoch, 4 // 4) and is pruned there.
    args = ["sweep", config, "--search", "random", "--trials", "6",
            "--space", "train.learning_rate=choice(0.05,0.00001)",
            "--runs-dir", tmp_path / "runs", "--name", "pruning"]
    result = seqtrain(*args)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "runs" / "pruning"
    study = study_of(folder)
    drawn = [t.params["train.learning_rate"] for t in study.trials]
    assert drawn == ["0.00001", "0.00001", "0.05", "0.05", "0.00001", "0.00001"]
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4 + ["PRUNED"] * 2
    pruned = folder / "004.learning_rate=0.00001"
    summary = json.loads((pruned / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["pruned_at"] == 2
    assert epochs_of(pruned) == [1, 2]
    assert "test" in summary and summary["test"]  # evaluated, as a completed run is
    listed = invoke("ls", folder, "--filter", "status=pruned", "--format", "json")
    assert sorted(r["run"] for r in json.loads(listed.stdout)) == [
        "004.learning_rate=0.00001", "005.learning_rate=0.00001"]
    # A pruned trial stopped at an epoch boundary with its state saved: it resumes.
    resumed = seqtrain("resume", pruned, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert epochs_of(pruned) == [1, 2, 3, 4]
    assert json.loads((pruned / "summary.json").read_text())["status"] == "completed"
    assert study_of(folder).trials[4].state.name == "PRUNED"  # the study is not reopened
    shown = seqtrain(*args, "--dry-run", "--json", "--quiet")
    assert [row["status"] for row in json.loads(shown.stdout)["trials"]][4:] == [
        "pruned, then completed", "pruned"]
    again = seqtrain(*args)  # the study holds its trials: nothing drawn, and it says so
    assert again.returncode == 0, again.stderr
    assert "the study holds 6 trials (--trials 6): none is drawn" in again.stderr
    assert len(study_of(folder).trials) == 6


def test_a_float_range_on_a_whole_number_setting_is_refused_before_anything_runs(tmp_path):
    config = write_config(tmp_path, QUICK)
    result = invoke("sweep", config, "--search", "tpe", "--trials", "2", "--space",
                    "model.units=float(8,32)", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.stderr
    assert "--space model.units=float(8,32): model.units takes whole numbers; use int(8,32)" \
        in result.stderr
    assert "whole number" in result.stderr and not (tmp_path / "runs").exists()


def test_a_folder_holding_another_search_is_refused_naming_what_differs(tmp_path):
    config = write_config(tmp_path, QUICK)
    folder = tmp_path / "runs" / "mine"
    args = ("sweep", config, "--search", "tpe", "--trials", "2", *SPACE, "--name", "mine",
            "--runs-dir", tmp_path / "runs", "--dry-run")
    folder.mkdir(parents=True)
    recorded = {"config_sha256": "0" * 64, "search": "random", "space": list(SPACE[1::2]),
                "sets": [], "objective": "val_loss", "direction": "min", "prune": "median"}
    (folder / "sweep.json").write_text(json.dumps(recorded))
    result = invoke(*args)
    assert result.exit_code == 2, result.stderr
    said = " ".join(result.stderr.split())
    assert "holds a different sweep (the config file changed since; search: \"random\" " \
        "there, \"tpe\" now; space: " in said


@pytest.mark.slow
def test_a_trial_refused_for_its_draw_fails_alone_and_three_in_a_row_stop_the_search(tmp_path):
    needs_optuna()
    config = write_config(tmp_path, {**QUICK, "train": {"epochs": 1, "batch_size": 32}})
    base = ["sweep", config, "--search", "random", "--trials", "4", "--runs-dir",
            tmp_path / "runs"]
    # The config's seed (7) draws 60000, 60000, 8, 8: a 60,000-unit LSTM does not fit in
    # memory, so its run is refused at start; the search goes on past it.
    mixed = seqtrain(*base, "--space", "model.units=choice(8,60000)", "--name", "mixed")
    assert mixed.returncode == 1, mixed.stderr
    lines = {line["number"]: line for line in jsonl(tmp_path / "runs" / "mixed")}
    assert [lines[n]["status"] for n in range(4)] == ["refused", "refused", "completed",
                                                      "completed"]
    assert "needs about" in lines[0]["error"] and "refused (exit 2)" in mixed.stderr
    study = study_of(tmp_path / "runs" / "mixed")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    # Every draw refused: three in a row stop the search, exit 2, with the reason.
    stopped = seqtrain(*base, "--space", "model.units=choice(60000,70000)", "--name", "all")
    assert stopped.returncode == 2, stopped.stderr
    assert "3 trials in a row were refused at start, so the search stopped" in stopped.stderr
    assert "Lower model.units" in stopped.stderr and "Traceback" not in stopped.stderr
    assert len(study_of(tmp_path / "runs" / "all").trials) == 3
