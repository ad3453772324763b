"""The spans the worker and the ingress make, named and attributed after OpenTelemetry's
messaging semantic conventions (messaging.system=kafka, destination, partition, offset,
consumer group, message key) plus the event's type and id.

- The ingress: a PRODUCER span `send <topic>` per stored delivery, the child of the request's
  own `traceparent` when it has one; its context goes into the record's headers.
- The worker: a CONSUMER span `process <processor>` per processor call, the child of the
  context in the record's headers (so one trace runs from the delivery to the effect). Each
  call is its own span: a retried effect shows as several, the failed ones with the error, and
  each call after a failed one carries a link to the failed call's span
  (worker.tracing.attempts). The span is current while the processor runs, so the HTTP
  forwarder's request carries it on.

Bounded cost: when the sampler is a standard one (worker.tracing.sampling.root_ratio), a call
first reads the record's `traceparent` flag (or, without one, draws against the ratio); an
unsampled call starts no span at all. A call that fails is recorded all the same: a span marked
`worker.record` (sampled at any ratio), in the record's trace, at the moment it raised.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from worker.errors import describe
from worker.processors.api import Context, Processor
from worker.tracing import attempts
from worker.tracing.config import active, root_ratio, tracer
from worker.tracing.names import KAFKA, TRACEPARENT, Attr, SpanName
from worker.tracing.propagation import extract_http, extract_kafka, inject_kafka

#: The last hex digit of a `traceparent`'s flags when the sampled bit is set.
_SAMPLED = frozenset(b"13579bdfBDF")


def sampled_flag(headers: Sequence[tuple[str, bytes]] | None) -> bool | None:
    """The sampled flag of the record's `traceparent`; None when it has none."""
    if headers:
        for name, value in headers:
            if name == TRACEPARENT and value:
                return value[-1] in _SAMPLED
    return None


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
        Attr.PROCESSOR: proc.name,
        Attr.EVENT_TYPE: ctx.event.type,
        Attr.EVENT_ID: ctx.event.id,
        Attr.ATTEMPT: ctx.attempt,
    }
    key = msg.key() if msg is not None else None
    if key:
        attrs["messaging.kafka.message.key"] = key.decode("utf-8", "replace")
    return attrs


def _key(ctx: Context, proc: Processor) -> attempts.Key:
    msg = ctx._msg
    if msg is not None:
        return attempts.key_of(msg, proc.name)
    return (ctx.topic, ctx.partition, ctx.offset, proc.name)


class _Calls:
    """Starting and ending one processor's call spans."""

    def __init__(self, proc: Processor, group: str) -> None:
        from opentelemetry.trace import Link, SpanKind, StatusCode

        self.proc, self.group = proc, group
        self.tracer = tracer(__name__)
        self.name = f"{SpanName.PROCESS} {proc.name}"
        ratio = root_ratio()
        #: a root call is traced when random() < cut (2.0: always, the sampler decides)
        self.cut = 2.0 if ratio is None else ratio
        #: the ratio decided here: the span is marked so that the sampler does not draw again
        self.force = ratio is not None and ratio < 1.0
        self.link, self.kind, self.error = Link, SpanKind.CONSUMER, StatusCode.ERROR

    def begin(self, ctx: Context, headers: Sequence[tuple[str, bytes]]) -> Any:
        """The span of a call on a record with headers, or None: not sampled."""
        flag = sampled_flag(headers) if self.cut <= 1.0 else True
        if flag is None:  # a root: the ratio decides, here
            return self.start(ctx, headers, self.force) if random.random() < self.cut else None
        return self.start(ctx, headers, False) if flag else None

    def start(self, ctx: Context, headers: Any, force: bool) -> Any:
        links = None
        if ctx.attempt > 1 and (before := attempts.take(_key(ctx, self.proc))) is not None:
            links = [self.link(before)]
        span = self.tracer.start_span(
            self.name, context=extract_kafka(headers), kind=self.kind, links=links,
            attributes={Attr.RECORD: True} if force else None)
        if span.is_recording():
            span.set_attributes(_attributes(self.proc, ctx, self.group))
        return span

    def failed(self, ctx: Context, span: Any, exc: BaseException) -> None:
        """The call raised: record it (a marked span if `span` is None or not sampled: from
        the moment it raised, as an unsampled call reads no clock) and remember it for the
        next call's or the dead letter's link."""
        own = span is not None and span.is_recording()
        if not own:
            msg = ctx._msg
            span = self.start(ctx, msg.headers() if msg is not None else None, True)
        span.record_exception(exc)
        span.set_status(self.error, describe(exc))
        attempts.failed(_key(ctx, self.proc), span.get_span_context())
        if not own:
            span.end()

    def succeeded(self, ctx: Context) -> None:
        """A call after a failed one succeeded: the failed one is not linked any more."""
        attempts.take(_key(ctx, self.proc))


def _traced(proc: Processor, group: str) -> Processor:
    """The processor, each call in a span. Per unsampled call on a record without headers:
    a random draw (the fast path, inlined)."""
    from opentelemetry.trace import use_span

    calls = _Calls(proc, group)
    begin, start, failed, succeeded = calls.begin, calls.start, calls.failed, calls.succeeded
    cut, force, rand = calls.cut, calls.force, random.random
    func: Any = proc.func

    if proc.is_async:
        async def call_async(event: Any, ctx: Context) -> None:
            msg = ctx._msg
            headers = None if msg is None else msg.headers()
            span = (begin(ctx, headers) if headers else
                    start(ctx, None, force) if rand() < cut else None)
            if span is None:
                try:
                    await func(event, ctx)
                except Exception as exc:
                    failed(ctx, None, exc)
                    raise
            else:
                with use_span(span, end_on_exit=True, record_exception=False,
                              set_status_on_exception=False):
                    try:
                        await func(event, ctx)
                    except Exception as exc:
                        failed(ctx, span, exc)
                        raise
            if ctx.attempt > 1:
                succeeded(ctx)

        wrapped: Callable[..., Any] = call_async
    else:
        def call(event: Any, ctx: Context) -> None:
            msg = ctx._msg
            headers = None if msg is None else msg.headers()
            span = (begin(ctx, headers) if headers else
                    start(ctx, None, force) if rand() < cut else None)
            if span is None:
                try:
                    func(event, ctx)
                except Exception as exc:
                    failed(ctx, None, exc)
                    raise
            else:
                with use_span(span, end_on_exit=True, record_exception=False,
                              set_status_on_exception=False):
                    try:
                        func(event, ctx)
                    except Exception as exc:
                        failed(ctx, span, exc)
                        raise
            if ctx.attempt > 1:
                succeeded(ctx)

        wrapped = call
    if callable(getattr(func, "aclose", None)):
        wrapped.aclose = func.aclose  # type: ignore[attr-defined]  # closed on the loop
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
        attrs[Attr.EVENT_TYPE] = event_type
    with tracer(__name__).start_as_current_span(
            f"{SpanName.SEND} {topic}", context=extract_http(request_headers),
            kind=SpanKind.PRODUCER, attributes=attrs):
        inject_kafka(record_headers)
        yield
