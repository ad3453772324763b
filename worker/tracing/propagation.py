"""W3C trace context (`traceparent`, `tracestate`) in and out of Kafka record headers and HTTP
requests, with the globally configured propagator (OTEL_PROPAGATORS; W3C by default)."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

from worker.tracing.names import TRACE_HEADERS


class _KafkaHeaders:
    """Getter and setter over a record's headers: a list of (name, bytes) pairs."""

    def get(self, carrier: Sequence[tuple[str, bytes]] | None, key: str) -> list[str] | None:
        if not carrier:
            return None
        found = [v.decode("utf-8", "replace") for k, v in carrier if k == key and v is not None]
        return found or None

    def keys(self, carrier: Sequence[tuple[str, bytes]] | None) -> list[str]:
        return [k for k, _ in carrier or ()]

    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier.append((key, value.encode()))


KAFKA_HEADERS = _KafkaHeaders()


def inject_kafka(headers: list[tuple[str, bytes]], context: Any = None) -> None:
    """Add the current (or `context`'s) trace context to a record's headers."""
    from opentelemetry.propagate import inject

    inject(headers, context=context, setter=KAFKA_HEADERS)  # type: ignore[arg-type]


def extract_kafka(headers: Iterable[tuple[str, bytes]] | None) -> Any:
    """The trace context a record carries (an empty context when it carries none)."""
    from opentelemetry.propagate import extract

    return extract(list(headers or ()), getter=KAFKA_HEADERS)  # type: ignore[arg-type]


def inject_http(headers: MutableMapping[str, str],
                record_headers: Sequence[tuple[str, bytes]] | None = None) -> None:
    """Add the current trace context to an outgoing HTTP request's headers; when no span is
    current (the call was not sampled: worker.tracing.spans), the record's own `traceparent`
    and `tracestate`, so the receiver continues the (unsampled) trace."""
    from opentelemetry.propagate import inject
    from opentelemetry.trace import get_current_span

    if get_current_span().get_span_context().is_valid or not record_headers:
        inject(headers)
        return
    for name, value in record_headers:
        if name in TRACE_HEADERS and value and name not in headers:
            headers[name] = value.decode("ascii", "replace")


def extract_http(headers: Any) -> Any:
    """The trace context an incoming HTTP request carries (`traceparent`, `tracestate`)."""
    from opentelemetry.propagate import extract

    return extract({k.lower(): v for k, v in headers.items()})


def with_trace(headers: Iterable[tuple[str, Any]], trace_headers: Iterable[tuple[str, Any]]
               ) -> list[tuple[str, Any]]:
    """`headers` with their `traceparent`/`tracestate` replaced by `trace_headers`."""
    return [*(h for h in headers if h[0] not in TRACE_HEADERS), *trace_headers]
