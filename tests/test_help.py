"""`--help` reads cleanly: no type noise, no markup noise, and no text lost to markup."""

from __future__ import annotations

import inspect
import re

import pytest

from seqtrain.cli import app
from tests.conftest import run_cli

COMMANDS = sorted(command.name or command.callback.__name__
                  for command in app.registered_commands)
NOISE = ("<bool>", "<path>", "<str>", "<list", "{", "[[", "]...]...", "\\[")


def _help(*command: str) -> str:
    result = run_cli(*command, "--help", env={"COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def _flat(text: str) -> str:
    """Help text without the panels' borders and line breaks: words one space apart."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize("command", [(), *[(name,) for name in COMMANDS]],
                         ids=lambda c: " ".join(c) or "seqtrain")
def test_help_has_no_noise_and_loses_no_text(command: tuple[str, ...]):
    text = _help(*command)
    assert text.lstrip().startswith(f"Usage: seqtrain {' '.join(command)}".rstrip())
    for noise in NOISE:
        assert noise not in text, f"{noise!r} in `seqtrain {' '.join(command)} --help`"
    if not command:
        return
    registered = next(c for c in app.registered_commands
                      if (c.name or c.callback.__name__) == command[0])
    flat = _flat(text)
    # cli.py's annotations are strings (`from __future__ import annotations`): evaluated here,
    # without get_type_hints, which on Python 3.10 wraps `= None` ones in an Optional.
    parameters = inspect.signature(registered.callback, eval_str=True).parameters.values()
    helps = [getattr(info, "help", None) for parameter in parameters
             for info in getattr(parameter.annotation, "__metadata__", ())]
    assert any(helps), f"no help text read for {command[0]}"
    for wanted in filter(None, helps):  # every word of every help text is shown, brackets and all
        assert " ".join(wanted.replace("\\[", "[").split()) in flat, wanted


def test_sweep_help_keeps_the_extras_name():
    assert "pip install 'seqtrain[ray]'" in _flat(_help("sweep"))
    assert "[default: <name>-sweep-<hash>, <name>-search-<hash> for --search]" in _flat(
        _help("sweep"))
    assert "pip install 'seqtrain[onnx]'" in _flat(_help("export"))


@pytest.mark.parametrize("command,usage", [
    ("run", "CONFIG"), ("ls", "[DIR]..."), ("plot", "RUN_DIR..."), ("eval", "RUN_DIR [INPUT]")])
def test_usage_lines_read_as_click_writes_them(command: str, usage: str):
    lines = [line.strip() for line in _help(command).splitlines()]
    assert f"Usage: seqtrain {command} [OPTIONS] {usage}" in lines
