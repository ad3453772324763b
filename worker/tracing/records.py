"""The span of a sampled processor call, made without the SDK's Span: the call was chosen
(worker.tracing.calls.CallTracing.choose: the record's sampled flag, or the draw at the ratio),
so no sampler runs; the span's ids come from the provider's id generator, its context is current
while the processor runs (a NonRecordingSpan: what the forwarder and any instrumented client
carry on), and when the call returns or raises the finished span — a ReadableSpan, as the SDK's
own Span hands over — goes to the provider's batch span processor (`on_end`), which exports it
as any other. The SDK's Span costs ~120,000 instructions with no attribute and ~10,000 more per
attribute (validated and copied under a lock, a context manager, a copy at the end): ~264,000
for a call span of 12; this ~54,000. The spans' attributes are the worker's own (not cut by
OTEL_ATTRIBUTE_* limits).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from contextvars import Token
from typing import Any

from opentelemetry.context import Context, attach, detach
from opentelemetry.sdk.trace import Event
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)

from worker.errors import describe
from worker.tracing.config import finished, provider
from worker.tracing.encoding import EncodedSpan
from worker.tracing.propagation import extract_kafka

#: (span context, parent span context or None, context token, start time in ns)
Started = tuple[SpanContext, SpanContext | None, Token[Context], int]

_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)


def _exception(error: BaseException) -> Event:
    """The `exception` event the SDK's Span.record_exception makes."""
    kind = type(error)
    name = (f"{kind.__module__}.{kind.__qualname__}"
            if kind.__module__ and kind.__module__ != "builtins" else kind.__qualname__)
    return Event("exception", {"exception.type": name, "exception.message": str(error),
                               "exception.stacktrace": "".join(traceback.format_exception(error)),
                               "exception.escaped": "False"})


class CallSpans:
    """Sampled spans of kind CONSUMER, the children of the context in a record's headers."""

    def __init__(self, scope: str) -> None:
        sdk = provider()
        self._ids = sdk.id_generator
        self._resource = sdk.resource
        self._root_flags = _RANDOM if self._ids.is_trace_id_random() else _SAMPLED
        self._scope = InstrumentationScope(scope)
        self._end = finished().on_end

    def start(self, headers: Sequence[tuple[str, bytes]] | None) -> Started:
        """A sampled span, current from here to `end`."""
        parent: SpanContext | None = None
        if headers:
            parent = get_current_span(extract_kafka(headers)).get_span_context()
            if not parent.is_valid:
                parent = None
        ids = self._ids
        if parent is None:
            context = SpanContext(ids.generate_trace_id(), ids.generate_span_id(), False,
                                  self._root_flags)
        else:
            random = TraceFlags.RANDOM_TRACE_ID & parent.trace_flags
            context = SpanContext(parent.trace_id, ids.generate_span_id(), False,
                                  _RANDOM if random else _SAMPLED, parent.trace_state)
        token = attach(set_span_in_context(NonRecordingSpan(context)))
        return context, parent, token, time.time_ns()

    def end(self, started: Started, name: str, attributes: dict[str, Any], encoded: bytes,
            links: Sequence[Any] = (), error: BaseException | None = None) -> None:
        """The span `started` ends (with `error`: ERROR, its exception event) and is handed
        to the exporting processor; `encoded`: its attributes as OTLP encodes them
        (worker.tracing.call_attributes)."""
        end = time.time_ns()
        context, parent, token, start = started
        detach(token)
        if error is None:
            events: tuple[Event, ...] = ()
            status = _UNSET
        else:
            events, status = (_exception(error),), Status(StatusCode.ERROR, describe(error))
        span = EncodedSpan(name, context, parent, self._resource, attributes, events, links,
                           SpanKind.CONSUMER, None, status, start, end, self._scope)
        span.encoded_attributes = encoded
        self._end(span)
