"""The spans the worker and the ingress make, named and attributed after OpenTelemetry's
messaging semantic conventions (messaging.system=kafka, destination, partition, offset,
consumer group, message key) plus the event's type and id.

- The ingress: a PRODUCER span `send <topic>` per stored delivery, the child of the request's
  own `traceparent` when it has one; its context goes into the record's headers.
- The worker: a CONSUMER span `process <processor>` per processor call, the child of the
  context in the record's headers (so one trace runs from the delivery to the effect). Each
  call is its own span: a retried effect shows as several, the failed ones with the error.
  The span is current while the processor runs, so the HTTP forwarder's request carries it on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from worker.processors.api import Context, Processor
from worker.tracing.config import active, tracer
from worker.tracing.propagation import extract_http, extract_kafka, inject_kafka

KAFKA = "kafka"


def _attributes(proc: Processor, ctx: Context, group: str) -> dict[str, Any]:
    msg = ctx._msg
    attrs: dict[str, Any] = {
        "messaging.system": KAFKA,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": ctx.topic,
        "messaging.destination.partition.id": str(ctx.partition),
        "messaging.kafka.offset": ctx.offset,
        "messaging.consumer.group.name": group,
        "worker.processor": proc.name,
        "worker.event.type": ctx.event.type,
        "worker.event.id": ctx.event.id,
        "worker.attempt": ctx.attempt,
    }
    key = msg.key() if msg is not None else None
    if key:
        attrs["messaging.kafka.message.key"] = key.decode("utf-8", "replace")
    return attrs


def _traced(proc: Processor, group: str) -> Processor:
    from opentelemetry.trace import SpanKind

    spans = tracer(__name__)
    func: Any = proc.func
    name = f"process {proc.name}"

    def parent(ctx: Context) -> Any:
        msg = ctx._msg
        return extract_kafka(msg.headers() if msg is not None else None)

    if proc.is_async:
        async def call_async(event: Any, ctx: Context) -> None:
            with spans.start_as_current_span(name, context=parent(ctx), kind=SpanKind.CONSUMER,
                                             attributes=_attributes(proc, ctx, group)):
                await func(event, ctx)

        wrapped: Any = call_async
    else:
        def call(event: Any, ctx: Context) -> None:
            with spans.start_as_current_span(name, context=parent(ctx), kind=SpanKind.CONSUMER,
                                             attributes=_attributes(proc, ctx, group)):
                func(event, ctx)

        wrapped = call
    if callable(getattr(func, "aclose", None)):
        wrapped.aclose = func.aclose  # the effects close it on their loop at the end
    return dataclasses.replace(proc, func=wrapped)


def traced_processors(processors: Sequence[Processor], group: str) -> list[Processor]:
    """The processors, each call in a span when tracing is on; unchanged when it is off (no
    cost per call)."""
    if not active():
        return list(processors)
    return [_traced(p, group) for p in processors]


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
        attrs["worker.event.type"] = event_type
    with tracer(__name__).start_as_current_span(
            f"send {topic}", context=extract_http(request_headers), kind=SpanKind.PRODUCER,
            attributes=attrs):
        inject_kafka(record_headers)
        yield
