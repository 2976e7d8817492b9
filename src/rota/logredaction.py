"""Redaction of every log line a rota process writes, whoever logs it.

A `RedactingFilter` on rota's own handler sees only records that reach that handler. User
code logs through its own loggers (`logging.getLogger("billing.gateway")`), often with no
handler at all, so Python's last-resort handler prints the record on stderr as it is.
`install_log_redaction()` closes every such path for the long-running commands (`rota
worker`, `rota dev`, `rota serve`, `rota scheduler`):

- the log record factory redacts each record as it is made: its message (arguments merged
  in), its `exc_info` traceback and its stack, so every handler sees the redacted text,
  including handlers added later and handlers of loggers that do not propagate;
- a `RedactingFilter` on the root logger's handlers and on `logging.lastResort` also catches
  records made without the factory and `extra=` attributes (set after the factory runs);
- `warnings.showwarning` redacts a warning's text before it is shown (on stderr, or logged
  when the app called `logging.captureWarnings`);
- `sys.excepthook` and `threading.excepthook` print a redacted traceback for an exception
  nobody caught.

Everything is undone by the callable it returns, so an in-process caller (tests) gets the
process back as it was. A record is rewritten only when redaction changes its text, so
handlers that group records by their unformatted message keep working until a secret shows.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TextIO

from .redaction import RedactingFilter, Redactor, redactor

Undo = Callable[[], None]

_lock = threading.Lock()
_installed = False


def redact_record(record: logging.LogRecord, r: Redactor) -> logging.LogRecord:
    """Replace the secret values in a record's message, traceback and stack, in place."""
    if not r:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: the handler reports it, with redacted parts
        record.msg = r.redact(str(record.msg))
        record.args = tuple(r.redact(repr(a)) for a in _args(record))
    else:
        redacted = r.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        if r.redact(text) != text:
            record.exc_text = text  # redacted below; handlers use exc_text when it is set
    if record.exc_text:
        record.exc_text = r.redact(record.exc_text)
    if record.stack_info:
        record.stack_info = r.redact(record.stack_info)
    return record


def _args(record: logging.LogRecord) -> tuple[Any, ...]:
    args = record.args
    if isinstance(args, tuple):
        return args
    return () if args is None else (args,)


def install_log_redaction(redactor_: Redactor | None = None) -> Undo:
    """Redact secret values from every log line, warning and uncaught traceback this process
    writes (see the module docstring); returns what undoes it. Installing again while
    installed does nothing (and its undo does nothing)."""
    global _installed
    r = redactor if redactor_ is None else redactor_
    with _lock:
        if _installed:
            return lambda: None
        _installed = True
    undos = [
        _wrap_record_factory(r),
        _filter_handlers(r),
        _redact_warnings(r),
        _wrap_excepthooks(r),
    ]

    def undo() -> None:
        global _installed
        for step in reversed(undos):
            step()
        with _lock:
            _installed = False

    return undo


@contextmanager
def log_redaction(redactor_: Redactor | None = None) -> Iterator[None]:
    """`install_log_redaction()` for the duration of a with block."""
    undo = install_log_redaction(redactor_)
    try:
        yield
    finally:
        undo()


def _wrap_record_factory(r: Redactor) -> Undo:
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(previous(*args, **kwargs), r)

    logging.setLogRecordFactory(factory)

    def undo() -> None:
        if logging.getLogRecordFactory() is factory:  # else someone wrapped ours: leave it
            logging.setLogRecordFactory(previous)

    return undo


def _filter_handlers(r: Redactor) -> Undo:
    handlers = [*logging.getLogger().handlers]
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    added = []
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            f = RedactingFilter(r)
            handler.addFilter(f)
            added.append((handler, f))

    def undo() -> None:
        for handler, f in added:
            handler.removeFilter(f)

    return undo


def _redact_warnings(r: Redactor) -> Undo:
    # Not logging.captureWarnings: with no handler configured it gives "py.warnings" a
    # NullHandler, and a worker's warnings would vanish instead of being redacted.
    previous = warnings.showwarning

    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if r:
            message = r.redact(str(message))
            line = None if line is None else r.redact(line)
        previous(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning

    def undo() -> None:
        if warnings.showwarning is showwarning:
            warnings.showwarning = previous

    return undo


def _wrap_excepthooks(r: Redactor) -> Undo:
    previous_sys, previous_thread = sys.excepthook, threading.excepthook

    def sys_hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if not r:
            previous_sys(kind, value, tb)
            return
        _write(r.redact("".join(traceback.format_exception(kind, value, tb))))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if not r or args.exc_type is SystemExit:
            previous_thread(args)
            return
        name = args.thread.name if args.thread is not None else threading.get_ident()
        text = "".join(
            traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
        )
        _write(r.redact(f"Exception in thread {name}:\n{text}"))

    sys.excepthook, threading.excepthook = sys_hook, thread_hook

    def undo() -> None:
        if sys.excepthook is sys_hook:
            sys.excepthook = previous_sys
        if threading.excepthook is thread_hook:
            threading.excepthook = previous_thread

    return undo


def _write(text: str) -> None:
    stream = sys.stderr
    if stream is None:  # pythonw and daemons may have no stderr: nowhere to print to
        return
    stream.write(text)
    stream.flush()
