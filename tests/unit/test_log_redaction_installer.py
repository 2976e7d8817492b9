"""install_log_redaction(): every way a process writes a log line, a warning or an uncaught
traceback shows `[redacted:NAME]` instead of a secret's value; its undo restores the process."""

from __future__ import annotations

import io
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from rota.logredaction import install_log_redaction, log_redaction
from rota.redaction import RedactingFilter, Redactor

SECRET = "pk-live-9Zq-secret-value"


@pytest.fixture
def known() -> Redactor:
    r = Redactor()
    r.register("api_key", SECRET)
    return r


@contextmanager
def lonely() -> Iterator[logging.Logger]:
    """A logger with no handler that does not propagate: Python's last resort prints it.
    Made in the test's body: pytest adds its capturing handler to loggers that do not
    propagate when a test phase begins."""
    logger = logging.getLogger("tests.logredact.lonely")
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.propagate = True


@pytest.fixture
def root_stream() -> Iterator[io.StringIO]:
    """A handler on the root logger, as logging.basicConfig would add."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s|%(card)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def test_the_last_resort_handler_prints_redacted_messages_and_tracebacks(
    known: Redactor, capsys: pytest.CaptureFixture[str]
) -> None:
    with lonely() as logger, log_redaction(known):
        logger.warning("charging with %s", SECRET)
        try:
            raise ValueError(f"refused {SECRET}")
        except ValueError:
            logger.exception("the call failed")
        logger.warning("where am I: %s", SECRET, stack_info=True)
    printed = capsys.readouterr().err
    assert SECRET not in printed
    assert "charging with [redacted:api_key]" in printed
    assert "ValueError: refused [redacted:api_key]" in printed
    assert "where am I: [redacted:api_key]" in printed


def test_before_installing_the_last_resort_prints_the_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with lonely() as logger:
        logger.warning("charging with %s", SECRET)  # what install_log_redaction is for
    assert SECRET in capsys.readouterr().err


def test_root_handlers_get_a_filter_that_also_redacts_extra_fields(
    known: Redactor, root_stream: io.StringIO
) -> None:
    undo = install_log_redaction(known)
    try:
        (handler,) = [h for h in logging.getLogger().handlers if _writes_to(h, root_stream)]
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        assert logging.lastResort is not None
        assert any(isinstance(f, RedactingFilter) for f in logging.lastResort.filters)
        logging.getLogger("billing").warning("paid with %s", SECRET, extra={"card": SECRET})
    finally:
        undo()
    assert root_stream.getvalue() == "paid with [redacted:api_key]|[redacted:api_key]\n"
    assert not any(isinstance(f, RedactingFilter) for f in handler.filters)
    assert logging.lastResort is not None
    assert not any(isinstance(f, RedactingFilter) for f in logging.lastResort.filters)


def _writes_to(handler: logging.Handler, stream: io.StringIO) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream is stream


def test_a_handler_added_after_installing_sees_redacted_records(known: Redactor) -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.logredact.late")
    logger.propagate = False
    with log_redaction(known):
        logger.addHandler(logging.StreamHandler(stream))
        logger.error("late %s", SECRET)
    logger.handlers.clear()
    logger.propagate = True
    assert stream.getvalue() == "late [redacted:api_key]\n"


def test_a_record_without_secrets_keeps_its_arguments(known: Redactor) -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger = logging.getLogger("tests.logredact.plain")
    logger.propagate = False
    logger.addHandler(Keep())
    with log_redaction(known):
        logger.error("order %s of %d", "A-1", 3)
    logger.handlers.clear()
    logger.propagate = True
    assert (seen[0].msg, seen[0].args) == ("order %s of %d", ("A-1", 3))


def test_warnings_are_shown_redacted(known: Redactor) -> None:
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with log_redaction(known):
            warnings.warn(f"key {SECRET} expires soon", UserWarning, stacklevel=1)
    assert [(str(w.message), w.category) for w in shown] == [
        ("key [redacted:api_key] expires soon", UserWarning)
    ]


def test_uncaught_exceptions_print_redacted_tracebacks(
    known: Redactor, capsys: pytest.CaptureFixture[str]
) -> None:
    def dies() -> None:
        raise RuntimeError(f"thread holding {SECRET}")

    with log_redaction(known):
        try:
            raise KeyError(f"main holding {SECRET}")
        except KeyError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        thread = threading.Thread(target=dies, name="doomed")
        thread.start()
        thread.join()
    printed = capsys.readouterr().err
    assert SECRET not in printed
    assert "KeyError: 'main holding [redacted:api_key]'" in printed
    assert "Exception in thread doomed:" in printed
    assert "RuntimeError: thread holding [redacted:api_key]" in printed


def test_undo_restores_the_process_and_a_second_install_is_a_no_op(known: Redactor) -> None:
    before = (
        logging.getLogRecordFactory(),
        warnings.showwarning,
        sys.excepthook,
        threading.excepthook,
    )
    undo = install_log_redaction(known)
    installed = (
        logging.getLogRecordFactory(),
        warnings.showwarning,
        sys.excepthook,
        threading.excepthook,
    )
    assert all(a is not b for a, b in zip(before, installed, strict=True))
    again = install_log_redaction(known)
    again()  # the nested undo leaves the first installation in place
    assert logging.getLogRecordFactory() is installed[0]
    undo()
    after = (
        logging.getLogRecordFactory(),
        warnings.showwarning,
        sys.excepthook,
        threading.excepthook,
    )
    assert all(a is b for a, b in zip(before, after, strict=True))


def test_a_secret_read_after_installing_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    later = Redactor()  # empty when installed, as in a worker before any run reads a secret
    with lonely() as logger, log_redaction(later):
        logger.warning("before: %s", SECRET)
        later.register("api_key", SECRET)
        logger.warning("after: %s", SECRET)
    printed = capsys.readouterr().err
    assert f"before: {SECRET}" in printed  # not yet a secret this process knows
    assert "after: [redacted:api_key]" in printed
