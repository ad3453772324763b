"""The ingress's span, named and attributed after OpenTelemetry's messaging semantic
conventions: a PRODUCER span `send <topic>` per stored delivery, the child of the request's own
`traceparent` when it has one; its context goes into the record's headers. And reading a
record's sampled flag (the worker's spans: worker.tracing.calls, worker.tracing.batches)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from worker.tracing.config import active, tracer
from worker.tracing.names import KAFKA, TRACEPARENT, Attr, SpanName
from worker.tracing.propagation import extract_http, inject_kafka

#: The last hex digit of a `traceparent`'s flags when the sampled bit is set.
_SAMPLED = frozenset(b"13579bdfBDF")


def sampled_flag(headers: Sequence[tuple[str, bytes]] | None) -> bool | None:
    """The sampled flag of the record's `traceparent`; None when it has none."""
    if headers:
        for name, value in headers:
            if name == TRACEPARENT and value:
                return value[-1] in _SAMPLED
    return None


@contextmanager
def publish_span(request_headers: Any, topic: str, key: bytes | None, event_type: str | None,
                 record_headers: list[tuple[str, bytes]]) -> Iterator[None]:
    """The ingress storing one delivery: a PRODUCER span (the child of the request's trace
    context, if any) whose context is added to `record_headers`. Nothing when tracing is
    off."""
    if not active():
        yield
        return
    from opentelemetry.trace import SpanKind

    attrs: dict[str, Any] = {"messaging.system": KAFKA, "messaging.operation.type": "send",
                             "messaging.operation.name": "send",
                             "messaging.destination.name": topic}
    if key:
        attrs["messaging.kafka.message.key"] = key.decode("utf-8", "replace")
    if event_type:
        attrs[Attr.EVENT_TYPE] = event_type
    with tracer(__name__).start_as_current_span(
            f"{SpanName.SEND} {topic}", context=extract_http(request_headers),
            kind=SpanKind.PRODUCER, attributes=attrs):
        inject_kafka(record_headers)
        yield
