"""What every command shares: finding the user's app, opening the store, printing, and
turning rota's errors into one red line and an exit code instead of a traceback."""

from __future__ import annotations

import asyncio
import difflib
import importlib
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from prometheus_client import start_http_server
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from ..app import App
from ..errors import ConfigError
from ..logredaction import install_log_redaction
from ..observability.collectors import StoreGauges, registry
from ..observability.logs import JsonFormatter
from ..redaction import RedactingFilter
from ..storage import SqlStore
from ..storage.urls import DEFAULT_URL, parse

# The root group, the exit codes and the error lines live in group.py, which `rota --help`
# imports without the rest of this module; every command still finds them here.
from .group import EXIT_CODES_HELP as EXIT_CODES_HELP
from .group import GLOBAL_OPTIONS as GLOBAL_OPTIONS
from .group import ExitCode as ExitCode
from .group import RotaGroup as RotaGroup
from .group import Settings as Settings
from .group import _warned, err, settings, warn
from .group import exit_code_of as exit_code_of
from .group import fail as fail
from .group import hoist_global_options as hoist_global_options
from .group import json_mode as json_mode

DEFAULT_APP = "app:app"

out = Console(soft_wrap=True)
_piped = Console(width=1000, soft_wrap=True)


class AppLoadError(ConfigError):
    """--app does not name a rota App that can be imported."""


class AppNotFound(AppLoadError):
    """The module --app names does not exist (as opposed to existing and failing)."""


def app_did_not_import(exc: AppLoadError, consequence: str) -> None:
    """The one warning line of a command that goes on without the user's app."""
    if _warned.get():
        return
    _warned.set(True)
    reason = "; ".join(line.strip() for line in str(exc).splitlines()[1:]) or str(exc)
    warn(f"the app does not import ({reason}); {consequence}")


# -- the user's app ---------------------------------------------------------------------


def load_app(spec: str) -> App:
    """Import `module:attribute` like uvicorn does, with the current directory on sys.path."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if not module_name or not all(part.isidentifier() for part in attr.split(".")):
        raise AppLoadError(f"--app {spec!r} must look like module:attribute, e.g. billing.app:app")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing app module is our business; a missing import inside it is the user's.
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise AppLoadError(import_failure(spec, exc)) from None
        raise AppNotFound(
            f"cannot import module {module_name!r} for --app {spec} (looked in {cwd}); "
            "pass --app module:attribute or set ROTA_APP"
        ) from None
    except Exception as exc:  # the user's module failed as it ran: show where, briefly
        raise AppLoadError(import_failure(spec, exc)) from None
    return _attribute(module, spec, module_name, attr)


def _attribute(module: Any, spec: str, module_name: str, attr: str) -> App:
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            names = [n for n in vars(module) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise AppLoadError(
                f"module {module_name!r} has no attribute {attr!r}{hint}; "
                f"pass --app {module_name}:<the name of your App>"
            ) from None
    if not isinstance(target, App):
        raise AppLoadError(
            f"{spec} is a {type(target).__name__}, not a rota App; "
            "point --app at the object made by rota.App(...)"
        )
    return target


def import_failure(spec: str, exc: BaseException) -> str:
    """A few lines instead of a traceback through importlib and rota: the user's own
    file:line, the code on that line and the exception."""
    where = _user_frame(exc)
    lines = [f"cannot import the app {spec}:"]
    if where is not None:
        path, lineno, code = where
        lines.append(f"  {path}:{lineno}: {code}" if code else f"  {path}:{lineno}")
    summary = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    lines.append(f"  {type(exc).__name__}: {summary}")
    return "\n".join(lines)


def _user_frame(exc: BaseException) -> tuple[str, int, str] | None:
    """The innermost frame in the user's files (not rota's, not the standard library's)."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return _shown(exc.filename), exc.lineno, (exc.text or "").strip()
    mine = [f for f in traceback.extract_tb(exc.__traceback__) if _is_users(f.filename)]
    if not mine:
        return None
    return _shown(mine[-1].filename), mine[-1].lineno or 0, (mine[-1].line or "").strip()


# rota's own files and the interpreter's (standard library, site-packages) are not the user's.
_NOT_USERS = (str(Path(__file__).resolve().parents[1]), sys.prefix, sys.base_prefix)


def _is_users(filename: str) -> bool:
    if filename.startswith("<"):
        return False  # <frozen importlib._bootstrap> and the like
    resolved = str(Path(filename).resolve())
    return "site-packages" not in resolved and not resolved.startswith(_NOT_USERS)


def _shown(filename: str) -> str:
    path = Path(filename).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@contextmanager
def loaded_app(ctx: typer.Context) -> Iterator[App]:
    """The user's app, pointed at the CLI's database URL when one was given."""
    s = settings(ctx)
    app = load_app(s.app_spec or DEFAULT_APP)
    if s.database_url:
        app.use_database(s.database_url)
    try:
        yield app
    finally:
        app.close()


def store_url(ctx: typer.Context, *, tolerant: bool = False) -> str:
    """--database-url > ROTA_DATABASE_URL > the app's own database_url > sqlite:///rota.db.

    Store-only commands need no app: the implicit default app:app is consulted only when it
    exists; an --app given explicitly must load, unless `tolerant` (commands that only need
    the database), where an app that fails to import costs one warning line.
    """
    s = settings(ctx)
    if s.database_url:
        return s.database_url
    try:
        app = load_app(s.app_spec or DEFAULT_APP)
    except AppLoadError as exc:
        if isinstance(exc, AppNotFound) and s.app_spec is None:
            return DEFAULT_URL
        if not tolerant:
            raise
        app_did_not_import(exc, f"using {DEFAULT_URL}")
        return DEFAULT_URL
    return app.database_url.original


@contextmanager
def read_store(ctx: typer.Context) -> Iterator[SqlStore]:
    """A store whose schema is current, for commands that read and manage runs."""
    url = parse(store_url(ctx, tolerant=True))
    if url.dialect == "sqlite" and url.target != ":memory:" and not Path(url.target).exists():
        raise ConfigError(
            f"there is no database at {url.target}; run `rota db migrate` to create one, "
            "or pass --database-url (or set ROTA_DATABASE_URL)"
        )
    store = SqlStore(url)
    try:
        store.check_schema()
        yield store
    finally:
        store.close()


# -- logging ----------------------------------------------------------------------------


class LogFormat(StrEnum):
    HUMAN = "human"
    JSON = "json"


LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        envvar="ROTA_LOG_FORMAT",
        case_sensitive=False,
        help="human: readable lines on stderr; json: one JSON object a line (ts, level, "
        "logger, message, run_id, step, job, principal, trace_id) for a log pipeline.",
    ),
]


@contextmanager
def log_to_stderr(fmt: LogFormat = LogFormat.HUMAN) -> Iterator[None]:
    """Show rota's own log lines (runs finished, failures, retries) while a worker, the
    scheduler or the API runs, then remove them; the one place that decides how rota's log
    lines look. Every log line of the process, rota's or the user code's, is redacted
    meanwhile. In JSON, the lines of the user's loggers (WARNING and up, as Python shows them
    by default) are JSON objects too: the handler sits on the root logger."""
    logger = logging.getLogger("rota")
    handler: logging.Handler
    if fmt == LogFormat.JSON:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        owner = logging.getLogger()
    else:
        handler = RichHandler(console=err, show_path=False, rich_tracebacks=False)
        owner = logger
    handler.addFilter(RedactingFilter())  # secret values read by tools never reach the log
    handler.setLevel(logging.INFO)
    previous = logger.level
    owner.addHandler(handler)
    _json_logs.append(fmt == LogFormat.JSON)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    undo_redaction = install_log_redaction()
    try:
        yield
    finally:
        undo_redaction()
        owner.removeHandler(handler)
        logger.setLevel(previous)
        _json_logs.pop()


_json_logs: list[bool] = []  # the formats of the log_to_stderr blocks open, innermost last


def notice(message: str, *, style: str | None = None) -> None:
    """A status line of a long-running command (stopping, ...): printed on stderr, or a log
    record in JSON mode so that stderr stays one JSON object a line."""
    if _json_logs and _json_logs[-1]:
        level = logging.ERROR if style == "red" else logging.INFO
        logging.getLogger("rota.cli").log(level, "%s", message)
    else:
        err.print(Text(message, style=style or ""))


MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (no token: see "
        "docs/observability.md#prometheus); 0 picks a free port.",
    ),
]
MetricsHost = Annotated[
    str,
    typer.Option(
        "--metrics-host", help="Address for --metrics-port; 0.0.0.0 for a scraper elsewhere."
    ),
]


@contextmanager
def metrics_server(app: App, host: str, port: int | None) -> Iterator[None]:
    """Serve this process's metrics and the store's gauges on their own port while the block
    runs (nothing when `port` is None), on a thread of prometheus_client's own."""
    if port is None:
        yield
        return
    gauges = StoreGauges(lambda: app.store, app.budgets, now=app.clock.now)
    try:
        server, thread = start_http_server(port, host, registry(gauges))
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
            "pick another --metrics-port"
        ) from None
    bound = server.server_address[1]
    out.print(f"metrics on http://{host}:{bound}/metrics")
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        gauges.close()


# -- output -----------------------------------------------------------------------------


def print_table(table: Any) -> None:
    """Full width when piped (nothing cut to 80 columns); the terminal's width otherwise."""
    (out if out.is_terminal else _piped).print(table)


def print_json(value: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print JSON on stdout (errors too: {error, message}).")
]


def report(as_json: bool, value: Any, message: str) -> None:
    """The outcome of a command that changes something: `value` as JSON on stdout under
    --json, else `message` for people on stderr (stdout stays for what scripts read)."""
    if as_json:
        print_json(value)
    else:
        err.print(Text(message))


def when(ts: float | None) -> str:
    """Epoch seconds as a compact UTC time, for tables."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


STATE_STYLES = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "WAITING": "magenta",
    "ENQUEUED": "default",
}


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, "default"))


def compact(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def on_stop_signals(
    first: Callable[[str], None], again: Callable[[str, int], None] | None = None
) -> Iterator[None]:
    """SIGTERM/SIGINT handling for long-running commands: the first signal calls
    `first(name)` (stop gracefully), any later one `again(name, signum)` (stop now)."""
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def handle(signum: int) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1 or again is None:
            first(name)
        else:
            again(name, signum)

    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(signum, handle, signum)
            handled.append(signum)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
