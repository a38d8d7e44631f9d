"""Shell completion, asked as a shell asks it: Click's variables, a real `python -m seqtrain`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from shlex import quote as shlex_quote

import pytest

from tests.conftest import CONFIGS, ROOT, run_cli

SINE = CONFIGS / "sine_gru.yaml"


def bash_words(line: str) -> list[str]:
    """COMP_WORDS as bash makes them: split at spaces, and at `=` (COMP_WORDBREAKS), the
    `=` a word of its own (and the current word when the line ends with it)."""
    return [part for word in line.split(" ") for part in re.findall(r"=+|[^=]+", word) or [""]]


def complete(line: str, cwd: Path | None = None) -> list[str]:
    """What bash gets for the word it completes, the part of `line` after the last space or
    `=`; passed as bash's hook passes it (the words one a line, the last one's index)."""
    words = bash_words(line)
    result = run_cli(cwd=cwd, env={"_SEQTRAIN_COMPLETE": "complete_bash",
                                   "COMP_WORDS": "\n".join(words),
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
    # bash replaces only what follows the `=`, so that is what it is given
    assert complete(f"seqtrain run {SINE} --set model.cell=") == ["simple_rnn", "lstm", "gru"]
    assert complete(f"seqtrain run {SINE} --set model.unroll=t") == ["true"]
    assert complete(f"seqtrain run {SINE} --set=model.cell=g") == ["gru"]
    assert complete(f"seqtrain run {SINE} --set=train.le") == ["train.learning_rate="]
    assert complete(f"seqtrain run {SINE} --set train.epochs=") == []  # any number
    # the words before are joined back too: a second --set after a complete one
    assert complete(f"seqtrain run {SINE} --set model.cell=gru --set model.unr") == [
        "model.unroll="]


def test_grid_completes_keys_then_the_values_not_listed_yet():
    assert complete(f"seqtrain sweep {SINE} --grid model.ce") == ["model.cell="]
    assert complete(f"seqtrain sweep {SINE} --grid model.cell=") == ["simple_rnn", "lstm",
                                                                     "gru"]
    # bash does not split at `,`: it replaces the whole list after the `=`
    assert complete(f"seqtrain sweep {SINE} --grid model.cell=lstm,") == [
        "lstm,simple_rnn", "lstm,gru"]
    assert complete(f"seqtrain sweep {SINE} --grid model.cell=lstm,gru,s") == [
        "lstm,gru,simple_rnn"]
    assert complete(f"seqtrain sweep {SINE} --grid model.units=8,") == []  # any number
    assert complete(f"seqtrain sweep {SINE} --grid model.cell=gru --grid data.no") == [
        "data.noise="]
    fish = run_cli(env={"_SEQTRAIN_COMPLETE": "complete_fish",
                        "_TYPER_COMPLETE_FISH_ACTION": "get-args",
                        "_TYPER_COMPLETE_ARGS": f"seqtrain sweep {SINE} --grid model.cell=gru,"})
    assert fish.stdout.split() == ["model.cell=gru,simple_rnn", "model.cell=gru,lstm"]


def test_zsh_and_fish_get_whole_words():
    line = f"seqtrain run {SINE} --set model.cell="
    zsh = run_cli(env={"_SEQTRAIN_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": line})
    assert zsh.returncode == 0, zsh.stderr
    assert '"model.cell=lstm"' in zsh.stdout and "_files" not in zsh.stdout
    fish = run_cli(env={"_SEQTRAIN_COMPLETE": "complete_fish", "_TYPER_COMPLETE_ARGS": line,
                        "_TYPER_COMPLETE_FISH_ACTION": "get-args"})
    assert fish.returncode == 0, fish.stderr
    assert fish.stdout.split() == ["model.cell=simple_rnn", "model.cell=lstm", "model.cell=gru"]
    # the task-specific keys come from the CONFIG found in those words
    data = run_cli(env={"_SEQTRAIN_COMPLETE": "complete_fish",
                        "_TYPER_COMPLETE_FISH_ACTION": "get-args",
                        "_TYPER_COMPLETE_ARGS": f"seqtrain run {SINE} --set data.s"})
    assert "data.split.train=" in data.stdout and "data.shift=" not in data.stdout


def test_no_shell_words_at_all_means_no_config_and_every_task(monkeypatch):
    # Typer's _TYPER_COMPLETE_ARGS (or bash's COMP_WORDS) missing: no crash, every task's keys
    from types import SimpleNamespace

    from seqtrain import completion

    monkeypatch.delenv("COMP_WORDS", raising=False)
    monkeypatch.delenv("_TYPER_COMPLETE_ARGS", raising=False)
    ctx = SimpleNamespace(params={})
    assert completion._config_path(ctx) is None
    keys = [key for key, _ in completion.set_keys(ctx, "data.s")]
    assert "data.shift=" in keys and "data.split.train=" in keys


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


# `--show-completion` detects the shell from the process's ancestors (shellingham): a test
# run by no shell (a scheduler, `nohup python`) has none. Typer's own switch makes it take
# the shell named instead, as its tests do.
NAMED_SHELL = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


def test_show_completion_prints_the_bash_hook_for_seqtrain():
    result = run_cli("--show-completion", "bash", env=NAMED_SHELL)
    assert result.returncode == 0, result.stderr
    assert "_SEQTRAIN_COMPLETE=complete_bash" in result.stdout
    assert "complete -o default -F _seqtrain_completion seqtrain" in result.stdout
    assert "compopt -o nospace" in result.stdout  # no space after `key=` or `folder/`
    assert "--install-completion" in run_cli("--help").stdout


@pytest.mark.parametrize(("line", "expected"), [
    ("run {} --set model.cell=", ["simple_rnn", "lstm", "gru"]),
    ("sweep {} --grid model.cell=lstm,g", ["lstm,gru"])])
def test_bash_hook_answers_the_words_bash_splits(tmp_path: Path, line: str, expected: list):
    """The printed hook, run by a real bash on the words bash makes of `--set model.cell=`
    (and of a `--grid` list: bash splits at `=` but not at `,`)."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    hook = run_cli("--show-completion", "bash", env=NAMED_SHELL).stdout
    words = " ".join(shlex_quote(word) for word in bash_words(
        "seqtrain " + line.format(SINE)))
    program = tmp_path / "seqtrain"  # the hook runs `env ... seqtrain`: a real program
    program.write_text(f'#!/bin/sh\nexec {shlex_quote(sys.executable)} -m seqtrain "$@"\n')
    program.chmod(0o755)
    script = f"""{hook}
PATH={shlex_quote(str(tmp_path))}:$PATH
COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_seqtrain_completion seqtrain 2>/dev/null
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([bash, "--norc", "--noprofile", "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == expected, out.stdout + out.stderr
