"""Whether tracing is on, and the tracer provider when it is (made once per process)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import structlog

log = structlog.get_logger(__name__)

#: The standard variables that ask for an exporter (any of them turns tracing on).
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_provider: Any = None


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return exporter == "otlp" or any(env.get(name) for name in _ENDPOINTS)


def active() -> bool:
    """True once `configure` turned tracing on in this process."""
    return _provider is not None


def configure(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on if the environment asks for it (see the package's docstring); True if
    it is on. `service_name` is used when OTEL_SERVICE_NAME is not set."""
    global _provider
    if _provider is not None or not wanted(environ):
        return _provider is not None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    env = os.environ if environ is None else environ
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))  # sampler: OTEL_TRACES_*
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    log.info("tracing on", service=provider.resource.attributes.get(SERVICE_NAME),
             sampler=type(provider.sampler).__name__)
    return True


def shutdown() -> None:
    """Export what is buffered and stop (bounded by the SDK's export timeout)."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()


def tracer(name: str) -> Any:
    """An OpenTelemetry tracer (only when `active()`)."""
    from opentelemetry import trace

    return trace.get_tracer(name)
