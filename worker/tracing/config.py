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
_processor: Any = None  # the provider's batch span processor (the only one the worker adds)
_set_globally = False
_ratio: float | None = None  # worker.tracing.sampling.root_ratio of the provider's sampler


def _disabled(environ: Mapping[str, str] | None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces."""
    env = os.environ if environ is None else environ
    if _disabled(env):
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return exporter == "otlp" or any(env.get(name) for name in _ENDPOINTS)


def active() -> bool:
    """True once `configure` turned tracing on in this process."""
    return _provider is not None


def configure(service_name: str, environ: Mapping[str, str] | None = None, *,
              exporter: Any = None) -> bool:
    """Turn tracing on if the environment asks for it (see the package's docstring); True if
    it is on. `service_name` is used when OTEL_SERVICE_NAME is not set. `exporter`: a span
    exporter instead of OTLP's (tests, bench/), which turns tracing on whatever the
    environment says (but OTEL_SDK_DISABLED)."""
    global _processor, _provider, _ratio, _set_globally
    if _provider is not None:
        return True
    if not (wanted(environ) or (exporter is not None and not _disabled(environ))):
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from worker.tracing.encoding import OTLPExporter
    from worker.tracing.sampling import from_environment, root_ratio

    env = os.environ if environ is None else environ
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes), sampler=from_environment())
    processor = BatchSpanProcessor(exporter or OTLPExporter())
    provider.add_span_processor(processor)
    if trace.get_tracer_provider() is not provider and not _set_globally:
        trace.set_tracer_provider(provider)  # (once per process: the SDK allows no more)
        _set_globally = True
    _provider, _processor, _ratio = provider, processor, root_ratio(provider.sampler)
    log.info("tracing on", service=provider.resource.attributes.get(SERVICE_NAME),
             sampler=provider.sampler.get_description())
    return True


def root_ratio() -> float | None:
    """The share of root spans the configured sampler samples, None when it is not a standard
    parent-based ratio sampler (worker.tracing.sampling.root_ratio)."""
    return _ratio


def shutdown() -> None:
    """Export what is buffered and stop (bounded by the SDK's export timeout)."""
    global _processor, _provider, _ratio
    provider, _provider, _processor, _ratio = _provider, None, None, None
    if provider is not None:
        provider.shutdown()


def tracer(name: str) -> Any:
    """An OpenTelemetry tracer of the configured provider (only when `active()`)."""
    return _provider.get_tracer(name)


def provider() -> Any:
    """The configured SDK tracer provider (only when `active()`)."""
    return _provider


def finished() -> Any:
    """The span processor that exports the provider's spans (its `on_end` takes a finished
    ReadableSpan: worker.tracing.records); only when `active()`."""
    return _processor
