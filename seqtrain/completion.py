"""Shell completion: config files, run directories and `--set` keys (no TensorFlow).

Typer calls these with the word being completed; `seqtrain --install-completion` installs
the shell's hook. `--set` keys come from the experiment file's JSON Schema (`schema.py`),
so they follow the pydantic models: every section's fields, and under `data.` the fields
of the config's task (all tasks' while no config is given or it names none).

Bash splits the words it passes at `=` (COMP_WORDBREAKS): `--set model.cell=l` arrives as
`--set`, `model.cell`, `=`, `l`, and the word it replaces is `l`. `BashComplete` joins them
back before Click resolves the command line, offers what follows the break, and installs a
hook that adds no space after a `key=` or a `folder/`. Typer registers its own completion
classes and scripts whenever it builds the command, so `use_bash_complete` is called after
that, and only for a completion request or `--show-completion`/`--install-completion`.
zsh and fish pass whole words and need none of this.
"""

from __future__ import annotations

import importlib
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

try:  # private, checked on Typer 0.16 (Click's class) and 0.29 (its own copy of Click's)
    from typer._completion_classes import BashComplete as _TyperBashComplete
except ImportError:  # elsewhere Typer's own class answers bash, with a space after `key=`
    _TyperBashComplete = None

from seqtrain.schema import alternatives as _alternatives

RUN_FILES = ("summary.json", "config.yaml")  # either makes a folder a run directory
CONFIG_SUFFIXES = (".yaml", ".yml")
DEFAULT_RUNS = "runs/"
COMPLETE_VAR = "_SEQTRAIN_COMPLETE"  # set by the shell hook on a completion request


def config_files(incomplete: str) -> list[str]:
    """YAML files and folders (to descend into) whose path starts with `incomplete`."""
    return [text + "/" if path.is_dir() else text
            for text, path in _entries(incomplete)
            if path.is_dir() or path.suffix in CONFIG_SUFFIXES]


def run_dirs(incomplete: str) -> list[str]:
    """Run directories, and folders holding some (to descend into), under `incomplete`.

    With nothing typed yet, the runs are looked for in `runs/`, `seqtrain run`'s default.
    """
    if not incomplete and Path(DEFAULT_RUNS).is_dir():
        incomplete = DEFAULT_RUNS
    found = []
    for text, path in _entries(incomplete):
        if not path.is_dir():
            continue
        if _is_run(path):
            found.append(text)
        elif _holds_runs(path, depth=2):
            found.append(text + "/")
    return found


def set_keys(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """`key.path=` for every config field starting with `incomplete`, with its description.

    After the `=`, the values a field allows, where it names them (choices, true/false).
    """
    from seqtrain.schema import json_schema

    schema = json_schema()
    fields = dict(_fields(schema, schema, "", _task_of(_config_path(ctx))))
    key, sep, _ = incomplete.partition("=")
    if sep:
        field = fields.get(key)
        return [(f"{key}={value}", "") for value in _values(schema, field or {})
                if f"{key}={value}".startswith(incomplete)]
    return [(f"{name}=", _gist(field.get("description", "")))
            for name, field in fields.items() if f"{name}=".startswith(incomplete)]


def grid_keys(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """`--grid`: the keys `set_keys` offers, then the values it offers after `=`.

    After each `,` too, the values the axis does not list yet (`model.cell=lstm,gru`):
    bash splits words at `=` (`BashComplete` joins them back) but not at `,`.
    """
    key, sep, listed = incomplete.partition("=")
    if not sep:
        return set_keys(ctx, incomplete)
    *done, last = listed.split(",")
    head = f"{key}={''.join(value + ',' for value in done)}"
    allowed = [found.partition("=")[2] for found, _ in set_keys(ctx, f"{key}=")]
    return [(head + value, "") for value in allowed
            if value not in done and value.startswith(last)]


def space_keys(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """`--space`: the keys `set_keys` offers; after `=`, `choice(...)` of a field's values.

    A numeric field's range (`float(lo,hi)`) is the user's to write.
    """
    key, sep, _ = incomplete.partition("=")
    if not sep:
        return set_keys(ctx, incomplete)
    allowed = [found.partition("=")[2] for found, _ in set_keys(ctx, f"{key}=")]
    spec = f"{key}=choice({','.join(allowed)})"
    return [(spec, "")] if allowed and spec.startswith(incomplete) else []


BASH_HOOK = """
%(complete_func)s() {
    local IFS=$'\\n'
    COMPREPLY=( $( env COMP_WORDS="${COMP_WORDS[*]}" \\
                   COMP_CWORD=$COMP_CWORD \\
                   %(autocomplete_var)s=complete_bash $1 ) )
    local candidate
    for candidate in "${COMPREPLY[@]}"; do
        [[ $candidate == *[=/] ]] && compopt -o nospace
    done
    return 0
}

complete -o default -F %(complete_func)s %(prog_name)s
"""


class BashComplete(_TyperBashComplete or object):
    """Typer's bash completion, with the words bash split at `=` joined back."""

    source_template = BASH_HOOK
    _cut = ""  # what precedes the word bash replaces, in the word Click completes

    def get_completion_args(self) -> tuple[list[str], str]:
        words, incomplete = super().get_completion_args()
        words, incomplete, self._cut = joined_words(
            [*words, incomplete], len(words))
        return words, incomplete

    def format_completion(self, item: Any) -> str:
        value = super().format_completion(item)
        cut = self._cut
        if cut.startswith("-") and not value.startswith(cut):  # `--set=key=`: Click
            cut = cut.partition("=")[2]  # completes what follows the option's `=`
        return value[len(cut):] if value.startswith(cut) else value


def joined_words(words: list[str], current: int) -> tuple[list[str], str, str]:
    """Bash's words (split at `=` too) as typed: those before, the current one, its cut.

    The cut is the part of the current word before the text bash itself replaces.

    `["--set", "model.cell", "=", "l"]`, current 3, gives `(["--set"], "model.cell=l",
    "model.cell=")`; `["--set", "model.cell", "="]`, current 2, `(["--set"], "model.cell=",
    "model.cell=")`. A word made of `=` only is bash's break, glued to its neighbours.
    """
    typed: list[str] = []
    index = 0
    glue = False
    for position, word in enumerate(words):
        is_break = bool(word) and set(word) == {"="}
        if typed and (is_break or glue):
            typed[-1] += word
        else:
            typed.append(word)
        glue = is_break
        if position == current:
            index = len(typed) - 1
    incomplete = typed[index]
    replaced = "" if glue else words[current]  # right after a break bash completes ""
    cut = incomplete[: len(incomplete) - len(replaced)] if incomplete.endswith(replaced) else ""
    return typed[:index], incomplete, cut


def use_bash_complete() -> None:
    """Answer bash with `BashComplete`, and give out its hook; after Typer set up its own.

    Reaches into Typer: its `_completion_scripts` (what `--show-completion` and
    `--install-completion` write), checked on Typer 0.16 and 0.29. Without them, or with a
    hook installed before, completion still works, only with a space after `key=`.
    """
    completing = os.environ.get(COMPLETE_VAR) or any(
        arg.startswith(("--show-completion", "--install-completion")) for arg in sys.argv)
    if _TyperBashComplete is None or not completing:
        return
    try:
        # Click's module, or Typer's copy of it: where Typer looks its classes up.
        shell_completion = importlib.import_module(_TyperBashComplete.__mro__[1].__module__)
        shell_completion.add_completion_class(BashComplete, "bash")
        from typer import _completion_shared

        _completion_shared._completion_scripts["bash"] = BASH_HOOK
    except Exception:  # another Typer: its own completion answers  # noqa: BLE001
        return


def _entries(incomplete: str) -> Iterator[tuple[str, Path]]:
    """Entries of the folder `incomplete` points into whose names start with what follows.

    Each as (the text to offer, the path); dot-entries only when a dot was typed.
    """
    folder, sep, prefix = incomplete.rpartition("/")
    folder += sep
    base = Path(folder or ".").expanduser()
    try:
        children = sorted(base.iterdir())
    except OSError:
        return
    for child in children:
        if child.name.startswith(prefix) and (prefix.startswith(".")
                                              or not child.name.startswith(".")):
            yield folder + child.name, child


def _is_run(path: Path) -> bool:
    return any((path / name).is_file() for name in RUN_FILES)


def _holds_runs(path: Path, depth: int) -> bool:
    """Whether a run directory lies within `depth` levels below `path` (a sweep folder)."""
    try:
        children = [child for child in path.iterdir() if child.is_dir()]
    except OSError:
        return False
    return any(_is_run(child) or (depth > 1 and _holds_runs(child, depth - 1))
               for child in children)


def _config_path(ctx: typer.Context) -> str | None:
    """The CONFIG given on the command line being completed, if any.

    Click parses no argument before an option that still lacks its value (`--set <TAB>`),
    so the words the shell passed are read too: bash's COMP_WORDS, and for zsh, fish and
    PowerShell _TYPER_COMPLETE_ARGS, the variable Typer's own hooks set (checked on Typer
    0.16 and 0.29; a Typer without it only loses the task-specific `data.` keys).
    """
    if ctx.params.get("config") is not None:
        return str(ctx.params["config"])
    words = os.environ.get("COMP_WORDS") or os.environ.get("_TYPER_COMPLETE_ARGS") or ""
    try:
        words_typed = shlex.split(words)
    except ValueError:  # an unclosed quote
        words_typed = words.split()
    return next((word for word in words_typed
                 if word.endswith(CONFIG_SUFFIXES) and Path(word).is_file()), None)


def _task_of(config: Any) -> str | None:
    """The `data.task` the config file names, if it can be read; never raises."""
    if config is None:
        return None
    import yaml

    try:
        raw = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    data = raw.get("data") if isinstance(raw, dict) else None
    task = data.get("task") if isinstance(data, dict) else None
    return task if isinstance(task, str) else None


def _fields(schema: dict[str, Any], node: dict[str, Any], prefix: str,
            task: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted key, its schema) of every field below `node`; sections are descended into.

    A section that may also be null (`train.early_stopping`) is offered itself too.
    """
    for name, field in node.get("properties", {}).items():
        key = prefix + name
        alternatives = _alternatives(schema, field)
        sections = [alt for alt in alternatives if "properties" in alt]
        if len(sections) < len(alternatives):  # a value, or null
            yield key, field
        if key == "data" and task is not None:
            chosen = [alt for alt in sections if alt["properties"]["task"].get("const") == task]
            sections = chosen or sections
        seen: set[str] = set()
        for section in sections:
            for child, child_field in _fields(schema, section, key + ".", task):
                if child not in seen:
                    seen.add(child)
                    yield child, child_field


def _values(schema: dict[str, Any], field: dict[str, Any]) -> list[str]:
    """The values a field names: its choices, true/false, null; none for free values."""
    values: list[str] = []
    for alt in _alternatives(schema, field):
        if "enum" in alt:
            values += [str(choice) for choice in alt["enum"]]
        elif "const" in alt:
            values.append(str(alt["const"]))
        elif alt.get("type") == "boolean":
            values += ["true", "false"]
        elif alt.get("type") == "null":
            values.append("null")
    return list(dict.fromkeys(values))


def _gist(description: str, width: int = 80) -> str:
    """The first sentence of a description, cut to `width` characters."""
    first = description.split(". ")[0].split("; ")[0].rstrip(".")
    return first if len(first) <= width else first[: width - 3].rstrip() + "..."
