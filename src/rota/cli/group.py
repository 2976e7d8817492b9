"""The root `rota` group: its commands loaded on first use, the root options found wherever
they were typed, and rota's errors turned into one red line and an exit code.

This module is what `rota --help` and `rota --version` import, so it stays light: no
database driver, no App, no store. A command's module (and everything it needs) is imported
only when that command runs or its own help is shown; the root help lists the commands from
the static table each `LazyCommand` carries.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, NoReturn

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand, TyperGroup
from typer.main import get_group

from ..errors import ConfigError, RotaError, SerializationError, StoreUnavailable

err = Console(stderr=True, soft_wrap=True)


class ExitCode(IntEnum):
    """The one table of exit codes every command follows (docs/cli.md, `rota --help`)."""

    OK = 0  # done
    FAILED = 1  # the work failed: a run failed, a replay diverged, a broken audit chain
    USAGE = 2  # usage or configuration error: a bad option, an app that does not import
    NOT_FOUND = 3  # no such run, job, approval, event, principal, webhook, shadow job
    REFUSED = 4  # refused: a disabled principal, a decided approval, a revoked token
    UNAVAILABLE = 5  # the database cannot be reached


EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 the work failed; 2 usage or configuration error; 3 not found; "
    "4 refused; 5 database unavailable. With --json, errors are printed on stdout as "
    '{"error": ..., "message": ...}.'
)

# Each error maps to one row of the table, the first that matches: rota's errors say what
# they are by their base class (a LookupError is "not found", a PermissionError "refused").
ERROR_CODES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], ExitCode], ...] = (
    (StoreUnavailable, ExitCode.UNAVAILABLE),
    ((ConfigError, SerializationError), ExitCode.USAGE),  # before LookupError: UnknownPrice
    (LookupError, ExitCode.NOT_FOUND),  # RunNotFound, UnknownJobError, UnknownPrincipal, ...
    (PermissionError, ExitCode.REFUSED),  # ApprovalRefused, PrincipalDisabled, TokenRefused
)
ERROR_NAMES = {
    ExitCode.FAILED: "failed",
    ExitCode.USAGE: "usage",
    ExitCode.NOT_FOUND: "not_found",
    ExitCode.REFUSED: "refused",
    ExitCode.UNAVAILABLE: "unavailable",
}
_json_mode: ContextVar[bool] = ContextVar("rota_json_mode", default=False)  # --json given?
_warned: ContextVar[bool] = ContextVar("rota_app_warned", default=False)  # said it already?
_listing: ContextVar[bool] = ContextVar("rota_listing", default=False)  # rendering root help?


def exit_code_of(exc: BaseException) -> ExitCode:
    """The row of the exit-code table an error belongs to."""
    for kinds, code in ERROR_CODES:
        if isinstance(exc, kinds):
            return code
    return ExitCode.FAILED


@dataclass(frozen=True)
class Settings:
    """The root options, handed to every command through the click context."""

    database_url: str | None  # --database-url, else ROTA_DATABASE_URL
    app_spec: str | None  # --app, else ROTA_APP; None: the implicit default app:app


def settings(ctx: typer.Context) -> Settings:
    """The root options of this command line."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings(None, None)


# -- commands loaded on first use -------------------------------------------------------


@dataclass(frozen=True)
class LazyCommand:
    """One row of the root command table: the name, where the command lives
    (`module:attribute`, a Typer app or a command function) and its one-line help, which
    `rota --help` shows without importing the module. A test checks the line against the
    real command's."""

    name: str
    target: str
    help: str

    def placeholder(self) -> TyperCommand:
        """A stand-in that only knows the name and the help line, for listings."""
        return TyperCommand(self.name, help=self.help)

    def load(self, rich_markup_mode: Any) -> Any:
        """Import the module and build the click command the way `add_typer` / `command`
        on the root Typer app would have built it."""
        module_name, _, attr = self.target.partition(":")
        target = getattr(importlib.import_module(module_name), attr)
        holder = typer.Typer(rich_markup_mode=rich_markup_mode)
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=self.name)
        else:
            holder.command(self.name)(target)
        return get_group(holder).commands[self.name]


def _psycopg(name: str) -> tuple[type[BaseException], ...]:
    """psycopg's exception class `name` if the driver is loaded, else nothing to catch: a
    psycopg error can only be raised once psycopg is imported, and importing it here would
    cost every `rota --help` a third of a second."""
    psycopg = sys.modules.get("psycopg")
    return (getattr(psycopg, name),) if psycopg is not None else ()


def _database_errors() -> tuple[type[BaseException], ...]:
    """Every error of the two drivers (psycopg's only if it is loaded)."""
    return (*_psycopg("Error"), sqlite3.Error)


# -- the root group ---------------------------------------------------------------------

GLOBAL_OPTIONS = ("--app", "--database-url")  # root options also accepted after a command


class RotaGroup(TyperGroup):
    """The root group: every command runs inside it, so errors are handled once, here, and
    the root options are found wherever the user typed them. The commands of
    `lazy_commands` are listed from the table and imported only when used."""

    lazy_commands: ClassVar[tuple[LazyCommand, ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = {c.name: c for c in self.lazy_commands if c.name not in self.commands}
        for command in self._lazy.values():  # in self.commands: listed, suggested on typos
            self.commands[command.name] = command.placeholder()

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        lazy = self._lazy.get(cmd_name)
        if lazy is not None and not _listing.get():
            self.commands[cmd_name] = lazy.load(self.rich_markup_mode)
            del self._lazy[cmd_name]
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        token = _listing.set(True)  # list the table's help lines, import nothing
        try:
            super().format_help(ctx, formatter)
        finally:
            _listing.reset(token)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        args = hoist_global_options(self, ctx, args)
        end = args.index("--") if "--" in args else len(args)
        _json_mode.set("--json" in args[:end])
        _warned.set(False)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RotaError as exc:
            fail(str(exc), code=exit_code_of(exc))
        except _psycopg("OperationalError") as exc:
            fail(f"database unavailable: {_first_line(exc)}", code=ExitCode.UNAVAILABLE)
        except _database_errors() as exc:
            fail(f"database error ({type(exc).__name__}): {_first_line(exc)}")
        except typer.TyperException as exc:  # click's usage errors (exit 2) derive from it
            if not json_mode():
                raise  # click prints it with the usage line
            fail(exc.format_message(), code=getattr(exc, "exit_code", ExitCode.USAGE))


def hoist_global_options(group: TyperGroup, ctx: typer.Context, args: list[str]) -> list[str]:
    """`rota runs list --app x:app` means `rota --app x:app runs list`: move each root
    option typed after a sub-command to the front, unless that command has an option of
    the same name (`rota demo --database-url`). Nothing after `--` is touched."""
    front: list[str] = []
    rest: list[str] = []
    command: Any = group  # descends through the groups named on the command line
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            rest.extend(args[i:])
            break
        name, eq, _ = token.partition("=")
        if name in GLOBAL_OPTIONS:
            taken = args[i : i + 1] if eq else args[i : i + 2]
            keep_here = command is group or _declares(command, name)
            (rest if keep_here else front).extend(taken)
            i += len(taken)
            continue
        if isinstance(command, TyperGroup) and not token.startswith("-"):
            command = command.get_command(ctx, token) or command
        rest.append(token)
        i += 1
    return front + rest


def _declares(command: Any, option: str) -> bool:
    return any(option in getattr(p, "opts", ()) for p in command.params)


# -- errors -----------------------------------------------------------------------------


def json_mode() -> bool:
    """Whether the command line asked for --json (errors are then JSON on stdout too)."""
    return _json_mode.get()


def fail(message: str, *, code: int = ExitCode.FAILED) -> NoReturn:
    """End the command with one line (or, under --json, one object) and the exit code."""
    if json_mode():
        kind = ERROR_NAMES.get(ExitCode(code), "failed")
        typer.echo(json.dumps({"error": kind, "message": message}, ensure_ascii=False))
    else:
        err.print(Text(f"error: {message}", style="red"))
    raise typer.Exit(code)


def warn(message: str) -> None:
    """One yellow line on stderr: something is off but the command goes on."""
    err.print(Text(f"warning: {message}", style="yellow"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
