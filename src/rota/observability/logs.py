"""Structured logs: one JSON object a line, with the run a line was written for.

`JsonFormatter` writes `ts` (UTC, ISO 8601), `level`, `logger` and `message`, then whatever is
known of where the line came from: `run_id`, `job`, `principal` (the run being executed, set
by the worker's run middleware with `run_fields`), `step` (the durable step, from
rota.runtime), `trace_id`/`span_id` (the active OpenTelemetry span, when there is one), any
`extra=` fields a caller passed, and `exc` for a traceback. Secrets are redacted before a
record reaches any formatter (rota.logredaction), so they are redacted here too.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from ..runtime import active_step

# The run the current task (and the threads it hands work to) is executing.
_run: ContextVar[Mapping[str, str] | None] = ContextVar("rota_log_run", default=None)

# LogRecord's own attributes: anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


@contextmanager
def run_fields(run_id: str, job: str, principal: str | None) -> Iterator[None]:
    """Lines logged inside the block (in this task, and in threads it starts through rota)
    name this run."""
    fields = {"run_id": run_id, "job": job}
    if principal:
        fields["principal"] = principal
    token = _run.set(fields)
    try:
        yield
    finally:
        _run.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_run.get() or {})
        step = active_step()
        if step is not None:
            line["run_id"] = step.run_id
            line["step"] = step.key
        line.update(_trace())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


def _trace() -> dict[str, str]:
    """The active span's ids, or nothing. Read only when something in the process imported
    the OpenTelemetry API already (rota's tracing, or the user's): until then no span can be
    active, and logging must not be what imports it."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
