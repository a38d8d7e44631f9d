"""Shell completion, asked as a shell asks it: Click's variables, a real `python -m seqtrain`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import CONFIGS, ROOT, run_cli

SINE = CONFIGS / "sine_gru.yaml"


def complete(line: str, cwd: Path | None = None) -> list[str]:
    """The candidates bash would get for the last word of `line` (empty after a space)."""
    words = line.split(" ")
    result = run_cli(cwd=cwd, env={"_SEQTRAIN_COMPLETE": "complete_bash", "COMP_WORDS": line,
                                   "COMP_CWORD": str(len(words) - 1)})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_set_completes_the_dotted_keys_of_the_config_and_its_task():
    assert complete(f"seqtrain run {SINE} --set train.le") == ["train.learning_rate="]
    data = complete(f"seqtrain validate {SINE} --set data.")
    assert "data.noise=" in data and "data.split.train=" in data and "data.task=" in data
    assert "data.shift=" not in data  # shifted_digit's, not sine's
    everything = complete("seqtrain sweep missing.yaml --set data.")
    assert {"data.noise=", "data.shift=", "data.path="} <= set(everything)
    early = complete(f"seqtrain plan {SINE} --set train.early")
    assert early == ["train.early_stopping=", "train.early_stopping.patience=",
                     "train.early_stopping.min_delta="]


def test_set_completes_the_values_a_field_names():
    assert complete(f"seqtrain run {SINE} --set model.cell=") == [
        "model.cell=simple_rnn", "model.cell=lstm", "model.cell=gru"]
    assert complete(f"seqtrain run {SINE} --set model.unroll=t") == ["model.unroll=true"]
    assert complete(f"seqtrain run {SINE} --set train.epochs=") == []  # any number


def test_config_completes_yaml_files_and_folders(tmp_path: Path):
    for name in ("a.yaml", "b.yml", "notes.txt", ".hidden.yaml", "sub/c.yaml"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("name: x\n")
    assert complete("seqtrain run ", cwd=tmp_path) == ["a.yaml", "b.yml", "sub/"]
    assert complete("seqtrain validate sub/", cwd=tmp_path) == ["sub/c.yaml"]
    assert complete("seqtrain run .h", cwd=tmp_path) == [".hidden.yaml"]


def test_run_dir_completes_run_directories_under_runs(tmp_path: Path, npz_run: Path):
    # A real trained run (shared, read only), seen as one trial of a sweep folder.
    (tmp_path / "runs" / "grid").mkdir(parents=True)
    (tmp_path / "runs" / "grid" / "t0").symlink_to(npz_run, target_is_directory=True)
    (tmp_path / "runs" / "empty").mkdir()
    assert complete("seqtrain eval ", cwd=tmp_path) == ["runs/grid/"]  # a folder of runs
    assert complete("seqtrain resume runs/grid/", cwd=tmp_path) == ["runs/grid/t0"]
    assert complete("seqtrain predict runs/g", cwd=tmp_path) == ["runs/grid/"]
    assert complete("seqtrain export runs/grid/x", cwd=tmp_path) == []
    assert complete("seqtrain ls runs/grid/", cwd=tmp_path) == ["runs/grid/t0"]
    assert complete("seqtrain plot runs/grid/t0 runs/g", cwd=tmp_path) == ["runs/grid/"]


def test_completion_never_imports_tensorflow():
    script = textwrap.dedent(f"""
        import os, sys
        os.environ.update(_SEQTRAIN_COMPLETE="complete_bash", COMP_CWORD="4",
                          COMP_WORDS="seqtrain run {SINE} --set model.")
        from seqtrain.cli import main
        try:
            main()
        except SystemExit:
            pass
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    lines = out.stdout.split()
    assert "model.cell=" in lines and lines[-1] == "[]", out.stdout + out.stderr


def test_show_completion_prints_the_bash_hook_for_seqtrain():
    result = run_cli("--show-completion", "bash")
    assert result.returncode == 0, result.stderr
    assert "_SEQTRAIN_COMPLETE=complete_bash" in result.stdout
    assert "complete -o default -F _seqtrain_completion seqtrain" in result.stdout
    assert "--install-completion" in run_cli("--help").stdout
