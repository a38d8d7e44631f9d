"""Broken and hostile input: damaged run directories, escaping names, unsafe files.

Each case must give exit 2, a message naming the file or field, no traceback, and
change nothing on disk (no new run directory, no file of the run rewritten).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY, invoke, write_config


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A small completed run, copied by each test before it damages it."""
    folder = tmp_path_factory.mktemp("hostile")
    config = write_config(folder, {**TINY, "train": {"epochs": 2, "batch_size": 32}})
    result = invoke("run", config, "--run-dir", folder / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    return folder / "run"


def snapshot(folder: Path) -> dict[Path, bytes]:
    if not folder.is_dir():
        return {}
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != "run.lock"}


def truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def state_file(run: Path) -> Path:
    return next((run / "checkpoints").glob("state-*.keras"))


# (case id, how to damage a copy of the finished run, words the message must contain)
DAMAGE = [
    ("empty folder", lambda r: [shutil.rmtree(r), r.mkdir()], ["not a seqtrain run directory"]),
    ("unrelated folder", lambda r: [shutil.rmtree(r), r.mkdir(), (r / "notes.txt").write_text("x")],
     ["not a seqtrain run directory"]),
    ("a file, not a folder", lambda r: [shutil.rmtree(r), r.write_text("x")], ["is a file"]),
    ("missing folder", lambda r: shutil.rmtree(r), ["does not exist"]),
    ("config.yaml deleted", lambda r: (r / "config.yaml").unlink(),
     ["not a seqtrain run directory"]),
    ("config.yaml edited invalid",
     lambda r: (r / "config.yaml").write_text((r / "config.yaml").read_text().replace(
         "units: 8", "units: -3")), ["config.yaml", "model.units", "-3"]),
    ("config.yaml not YAML", lambda r: (r / "config.yaml").write_text("name: [unclosed\n"),
     ["config.yaml", "invalid YAML"]),
    ("config.yaml with a python tag",
     lambda r: (r / "config.yaml").write_text("name: !!python/object/apply:os.getcwd []\n"),
     ["config.yaml", "tags"]),
]
EVAL_DAMAGE = [
    ("best checkpoint deleted", lambda r: (r / "checkpoints" / "best.keras").unlink(),
     ["best.keras is missing", "--checkpoint last"]),
    ("best checkpoint truncated", lambda r: truncate_half(r / "checkpoints" / "best.keras"),
     ["best.keras", "damaged"]),
    ("best checkpoint random bytes", lambda r: random_bytes(r / "checkpoints" / "best.keras"),
     ["best.keras", "damaged"]),
]
RESUME_DAMAGE = [
    ("state checkpoint deleted", lambda r: state_file(r).unlink(), ["state-", "is missing"]),
    ("state checkpoint truncated", lambda r: truncate_half(state_file(r)),
     ["state-", "damaged"]),
    ("state checkpoint random bytes", lambda r: random_bytes(state_file(r)),
     ["state-", "damaged"]),
    ("resume.json damaged", lambda r: truncate_half(r / "checkpoints" / "resume.json"),
     ["resume.json", "damaged"]),
    ("summary.json damaged", lambda r: (r / "summary.json").write_text("{"),
     ["summary.json", "not valid JSON"]),
    ("summary.json deleted", lambda r: (r / "summary.json").unlink(),
     ["summary.json is missing"]),
]


def damaged_copy(finished: Path, tmp_path: Path, damage) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    damage(copy)
    return copy


def check_refused(result, words, before, copy):
    assert result.exit_code == 2, (result.stdout, result.stderr)
    for word in words:
        assert word in result.stderr, f"{word!r} not in:\n{result.stderr}"
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert snapshot(copy) == before


@pytest.mark.parametrize("case", DAMAGE + EVAL_DAMAGE, ids=[c[0] for c in DAMAGE + EVAL_DAMAGE])
def test_eval_refuses_a_broken_run_directory(case, finished, tmp_path):
    _, damage, words = case
    copy = damaged_copy(finished, tmp_path, damage)
    before = snapshot(copy)
    check_refused(invoke("eval", copy), words, before, copy)


@pytest.mark.parametrize("case", DAMAGE + RESUME_DAMAGE,
                         ids=[c[0] for c in DAMAGE + RESUME_DAMAGE])
def test_resume_refuses_a_broken_run_directory(case, finished, tmp_path):
    _, damage, words = case
    copy = damaged_copy(finished, tmp_path, damage)
    if (copy / "summary.json").exists() and "summary.json" not in case[0]:
        # A killed run: resumable in principle, so only the damage can stop it.
        text = (copy / "summary.json").read_text()
        (copy / "summary.json").write_text(text.replace('"completed"', '"running"'))
    resume_json = copy / "checkpoints" / "resume.json"
    if resume_json.exists() and "resume.json" not in case[0]:
        resume_json.write_text(resume_json.read_text().replace('"epoch": 2', '"epoch": 1'))
    before = snapshot(copy)
    check_refused(invoke("resume", copy, "--quiet"), words, before, copy)


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "x\ny", "tab\there",
                                  "", "n" * 81, "/abs"])
def test_a_name_cannot_escape_the_runs_folder(name, tmp_path):
    config = write_config(tmp_path)
    runs = tmp_path / "runs"
    for args in (["--name", name], ["--set", f"name={name!r}"]):
        result = invoke("run", config, "--runs-dir", runs, *args)
        assert result.exit_code == 2, (name, result.stderr)
        assert "name" in result.stderr and "Traceback" not in result.stderr
    assert not runs.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


def test_a_good_name_flag_names_the_run_directory(tmp_path):
    config = write_config(tmp_path)
    result = invoke("validate", config, "--set", "name=lstm.units-64_v2")
    assert result.exit_code == 0
    result = invoke("run", config, "--runs-dir", tmp_path / "runs", "--name", "1e3", "--quiet",
                    "--set", "train.epochs=1")
    assert result.exit_code == 0, result.stderr
    assert Path(result.stdout.strip()).name.startswith("1e3.epochs=1-")  # a string, not 1000.0
