"""The SDK providers rota builds from the standard OTLP variables: spans and GenAI metrics
exported over OTLP/HTTP (protobuf) to `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal
endpoints), with `OTEL_EXPORTER_OTLP_HEADERS` and the rest read by the exporter itself.
Imported only when those variables are set."""

from __future__ import annotations

import os

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NoOpTracerProvider

from .telemetry import Telemetry


def from_environment() -> Telemetry:
    """Providers exporting over OTLP/HTTP, flushed when the process exits (the SDK
    registers its own atexit shutdown). Spans go out when OTEL_EXPORTER_OTLP_ENDPOINT or
    ..._TRACES_ENDPOINT is set, metrics when it or ..._METRICS_ENDPOINT is (a trace-only
    backend gets no metrics it would refuse); `OTEL_TRACES_EXPORTER=none` or
    `OTEL_METRICS_EXPORTER=none` turns one off. The service is "rota" unless
    OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise."""
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": "rota"})
    tracer_provider = meter_provider = None
    if _wanted("TRACES"):
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if _wanted("METRICS"):
        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    return Telemetry(
        tracer_provider or NoOpTracerProvider(),
        meter_provider or NoOpMeterProvider(),
        owned=True,
    )


def _wanted(signal: str) -> bool:
    """The signal ("TRACES" or "METRICS") has an endpoint and is not turned off."""
    if os.environ.get(f"OTEL_{signal}_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )
