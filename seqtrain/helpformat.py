"""How `--help` reads on every supported Typer (0.16 to 0.29): without noise.

Typer 0.29 writes a required argument as `{CONFIG}` in the usage line, decorates a metavar
that is already decorated (`[[DIR]...]...`), and types every flag `<bool>`; 0.16 writes
the usage as Click does and leaves flags bare. These classes keep Click's usage line
(`CONFIG`, `[DIR]...`, `RUN_DIR...`), show no type after a flag, and name an option's
value as Click does (`PATH`, `INTEGER`, `TEXT`) unless the option names it itself. The
usage line and the options read the same on both; the arguments panel does not: 0.16
shows an argument's Python name beside its metavar (`folders  DIR`), 0.29 the metavar.

`Group` also hands bash completion to `completion.BashComplete` (see there).
"""

from __future__ import annotations

import functools
from typing import Any

from typer.core import TyperCommand, TyperGroup

from seqtrain import completion


def usage_piece(argument: Any) -> str:
    """An argument in the usage line, as Click writes it: `NAME`, `[NAME]`, `NAME...`."""
    name = argument.metavar or argument.name.upper()
    if not argument.required:
        name = f"[{name}]"
    return name + ("..." if argument.nargs != 1 else "")


def settle_metavar(param: Any, ctx: Any) -> None:
    """Give an option without a metavar Click's own; a flag an empty one (no `<bool>`).

    An argument keeps its name alone: Typer 0.29 would add its Python type (`<list[Path]>`).
    """
    if param.param_type_name == "argument" and hasattr(param, "display_type_rich"):
        param.__class__ = _untyped(type(param))
    if param.param_type_name != "option" or param.metavar is not None:
        return
    if param.is_flag:
        param.metavar = ""
    elif hasattr(param, "type"):  # Click's parameter: PATH, INTEGER, TEXT, FLOAT
        param.metavar = param.type.name.upper()
    else:  # Typer 0.29's own: <path>, <int>, <str>, <float>
        name = param.display_type(ctx).strip("<>")
        param.metavar = _CLICK_NAMES.get(name, name).upper()


_CLICK_NAMES = {"int": "integer", "str": "text"}


@functools.cache
def _untyped(cls: type) -> type:
    """`cls`, but with no type column in the help (Typer 0.29's arguments)."""
    if getattr(cls, "_untyped", False):
        return cls
    return type(cls.__name__, (cls,), {"_untyped": True,
                                       "display_type_rich": lambda self, ctx: None})


class Command(TyperCommand):
    """A command whose usage line and option table read as Click's."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [usage_piece(param) for param in self.get_params(ctx)
                         if param.param_type_name == "argument"]

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            settle_metavar(param, ctx)
        return params


class Group(TyperGroup):
    """The `seqtrain` group: its own options as `Command`'s (each command is `cls=Command`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            settle_metavar(param, ctx)
        return params

    def _main_shell_completion(self, *args: Any, **kwargs: Any) -> None:
        # Click's and Typer's `main` call this before parsing anything, after Typer set up its
        # own completion classes: the moment to answer bash with seqtrain's (`completion`).
        completion.use_bash_complete()
        super()._main_shell_completion(*args, **kwargs)
