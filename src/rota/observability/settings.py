"""Whether rota traces, and where to: decided once, on first use, never at import.

In order: providers given to `configure` (tests, or an app that builds its own); else the
standard OTLP variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `..._TRACES_ENDPOINT`,
`..._METRICS_ENDPOINT`), for which rota builds an SDK provider exporting over OTLP/HTTP;
else a tracer provider the process installed globally (opentelemetry-instrument, Logfire,
...); else nothing, and every wrapper of this package is left out (`active()` is None).
`OTEL_SDK_DISABLED=true` turns it all off.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .telemetry import Telemetry

CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENDPOINT_ENVS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)

_lock = threading.Lock()
_given: tuple[Any, Any] | None = None  # (tracer provider, meter provider) from configure
_decided = False
_active: Telemetry | None = None


def configure(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Trace to these providers (either may be None: the global one then). With neither,
    forget any earlier choice: the next use decides from the environment again. Providers
    rota built from the environment before are flushed and shut down."""
    global _given, _decided, _active
    with _lock:
        if _active is not None:
            _active.close()
        given = (tracer_provider, meter_provider)
        _given = given if any(p is not None for p in given) else None
        _decided, _active = False, None


def active() -> Telemetry | None:
    """What rota traces with, or None when tracing is off (the wrappers are left out)."""
    if _decided:
        return _active
    return _decide()


def capture_content() -> bool:
    """Message content goes on spans only when opted in (always redacted)."""
    return os.environ.get(CONTENT_ENV, "").strip().lower() == "true"


def _decide() -> Telemetry | None:
    global _decided, _active
    with _lock:
        if not _decided:
            _active = _choose()
            _decided = True
        return _active


def _choose() -> Telemetry | None:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if _given is not None:
        from .telemetry import Telemetry  # noqa: PLC0415  # heavy: opentelemetry

        return Telemetry(*_given)
    if any(os.environ.get(name) for name in ENDPOINT_ENVS):
        from .export import from_environment  # noqa: PLC0415  # heavy: the SDK, the exporter

        return from_environment()
    if "opentelemetry.trace" not in sys.modules:
        return None  # nothing can have installed a tracer provider: stay off, import nothing
    from .telemetry import installed_globally  # noqa: PLC0415  # heavy: opentelemetry

    return installed_globally()
