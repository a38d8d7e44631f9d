"""The docs stay true: generated reference current, every shown command and config working.

README.md and docs/*.md are read for their ```bash and ```yaml blocks: every `seqtrain`
command must parse with the real CLI, the cheap ones (validate, ls, a sweep's dry run) run
for real, every experiment config validates, and every file or page they point to exists.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import typer
import yaml
from pydantic import BaseModel

from seqtrain.cli import app
from seqtrain.config import ExperimentConfig, load_config, validate_config
from seqtrain.data import task_names, task_params_models
from seqtrain.errors import ConfigError
from tests.conftest import ROOT, invoke

README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXTS = {page: page.read_text() for page in PAGES}


def blocks(language: str) -> list[tuple[str, str]]:
    """(page name, block) of every fenced block in that language, in every page."""
    return [(page.relative_to(ROOT).as_posix(), block) for page, text in TEXTS.items()
            for block in re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)]


def seqtrain_commands() -> list[tuple[str, list[str]]]:
    """(page, argv after `seqtrain`) of every seqtrain command in the bash blocks."""
    found = []
    for page, block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True  # quoted words stay whole; | ; && ( ) split
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token.strip("();<>|&"):
                    words.append(token)
                    continue
                if words and words[0] in ("seqtrain", ".venv/bin/seqtrain"):
                    found.append((page, words[1:]))
                words = []
    return found


def load_generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the generated configuration reference ----------------------------------------------

def test_configuration_reference_is_generated_from_the_current_models():
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert load_generator().render() == committed, (
        "docs/configuration.md is out of date with the config models' field descriptions; "
        "regenerate it with `python docs/generate.py` and commit the result")


def test_every_config_field_and_task_parameter_has_a_row_in_the_reference():
    reference = (ROOT / "docs" / "configuration.md").read_text()

    def paths(model: type[BaseModel], prefix: str) -> list[str]:
        found = []
        for name, field in model.model_fields.items():
            nested = [arg for arg in (field.annotation, *getattr(field.annotation, "__args__",
                                                                 ()))
                      if isinstance(arg, type) and issubclass(arg, BaseModel)]
            if nested:
                found += paths(nested[0], f"{prefix}{name}.")
            if not (nested and field.default is not None) and name != "data":
                found.append(prefix + name)
        return found

    expected = paths(ExperimentConfig, "")
    for task in task_params_models():
        expected += paths(task, "data.")
    missing = sorted({path for path in expected if f"| `{path}` |" not in reference})
    assert not missing, f"docs/configuration.md lacks: {missing}"


def test_every_config_field_has_a_short_description():
    def described(model, prefix=""):
        for name, field in model.model_fields.items():
            yield prefix + name, field.description or ""
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from described(field.annotation, f"{prefix}{name}.")
    models = [ExperimentConfig, *task_params_models()]
    fields = [item for model in models for item in described(model)]
    assert [path for path, text in fields if not text] == []
    long = [path for path, text in fields if len(text) > 300 or text.count(". ") > 2]
    assert not long, f"descriptions longer than one or two sentences: {long}"


# --- what the README must keep -----------------------------------------------------------

def test_ci_runs_the_readme_test_command_verbatim():
    commands = re.findall(r"```bash\n(.+?)\n```", README)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_exit_codes_are_documented():
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 130 |"):
        assert code in README


def test_the_readme_is_short_and_links_every_docs_page():
    assert len(README.splitlines()) <= 350
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in README, f"README does not link docs/{page.name}"


# --- commands, configs and files shown in the docs ---------------------------------------

def test_every_seqtrain_command_in_the_docs_parses_with_the_cli():
    group = typer.main.get_command(app)
    context = group.make_context("seqtrain", ["--help"], resilient_parsing=True)
    commands = seqtrain_commands()
    assert len(commands) > 20  # the extraction found the docs' commands
    problems = []
    for page, argv in commands:
        name, args = argv[0], argv[1:]
        if name.startswith("-"):
            continue  # `seqtrain --help`
        command = group.get_command(context, name)
        if command is None:
            problems.append(f"{page}: no command {name!r} (seqtrain {' '.join(argv)})")
            continue
        try:
            parsed = command.make_context(name, list(args), parent=context).params
        except Exception as err:  # click's UsageError (typer may vendor click)
            problems.append(f"{page}: seqtrain {' '.join(argv)}: {err}")
            continue
        config = parsed.get("config")
        if config and str(config).startswith("configs/"):  # its --set values validate too
            try:
                load_config(ROOT / config, parsed.get("set_") or ())
            except ConfigError as err:
                problems.append(f"{page}: seqtrain {' '.join(argv)}: {err}")
    assert not problems, "\n".join(problems)


def test_the_cheap_commands_in_the_docs_run(monkeypatch):
    """validate, ls and a sweep's dry run write nothing and need no TensorFlow: run them."""
    monkeypatch.chdir(ROOT)
    ran = 0
    for page, argv in seqtrain_commands():
        cheap = argv[0] in ("validate", "ls") or (argv[0] == "sweep" and "--dry-run" in argv)
        if cheap and not any("$" in word for word in argv):
            result = invoke(*argv)
            assert result.exit_code == 0, f"{page}: seqtrain {' '.join(argv)}\n{result.stderr}"
            ran += 1
    assert ran >= 3


def test_every_experiment_config_in_the_docs_validates():
    configs = [(page, yaml.safe_load(block)) for page, block in blocks("yaml")]
    configs = [(page, raw) for page, raw in configs if isinstance(raw, dict) and "data" in raw]
    assert len(configs) >= 2
    own = []
    for page, raw in configs:
        if raw["data"].get("task") in task_names():
            validate_config(raw, {}, source=page)
        else:
            own.append(raw)
    # A task registered in Python: as examples/my_task.yaml, validated where it is registered.
    example = yaml.safe_load((ROOT / "examples" / "my_task.yaml").read_text())
    assert own == [example]
    script = ("import json, sys; sys.path.insert(0, 'examples'); import my_task; "
              "from seqtrain.config import load_config; "
              "print(load_config('examples/my_task.yaml').data.task)")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.stdout.strip() == "first_symbol", out.stderr


def test_every_file_and_page_the_docs_point_to_exists():
    missing = []
    for page, text in TEXTS.items():
        for path in re.findall(r"(?<![\w/.])((?:configs|examples|benchmarks|docs|tests|seqtrain)"
                               r"/[\w./-]*\w)", text):
            if "results" not in path and not (ROOT / path).exists():
                missing.append(f"{page.name}: {path}")
        for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            if not (page.parent / link).exists():
                missing.append(f"{page.name}: link {link}")
    assert not missing, missing


# --- the "your own task" example ---------------------------------------------------------

def test_the_own_task_example_trains_from_python_and_its_run_lists(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "my_task.py"), "train.epochs=2",
         "data.num_samples=300", "model.units=8", "device=cpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / out.stdout.strip().splitlines()[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["config"]["data"]["task"] == "first_symbol"
    assert summary["baseline"]["description"] == "chance"
    assert summary["baseline"]["accuracy"] == pytest.approx(0.25, abs=0.15)
    assert set(summary["test"]) >= {"loss", "accuracy"}

    listed = invoke("ls", tmp_path / "runs", "--format", "json")
    assert listed.exit_code == 0 and run_dir.name in listed.stdout
    # The command line does not know the task: a clean exit 2 that names it, as documented.
    evaluated = invoke("eval", run_dir)
    assert evaluated.exit_code == 2 and "first_symbol" in evaluated.stderr
