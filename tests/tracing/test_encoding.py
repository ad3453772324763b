"""worker.tracing.encoding: the worker's OTLP encoding gives the same request, byte for byte, as
the SDK's `encode_spans` (what Jaeger receives is then the same; the real-Jaeger tests send
through it too)."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from worker.tracing.encoding import encode


def _spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "enc", "n": 3}),
                              span_limits=SpanLimits(max_attributes=8, max_links=2))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("worker.a", "1.0", schema_url="https://x/1.0")
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1),
                         trace_state=TraceState([("vendor", "v1"), ("other", "o")]))
    first = tracer.start_span(
        "process p", context=set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.CONSUMER,
        attributes={"s": "x", "b": True, "i": -5, "big": 2**62, "f": 1.5, "by": b"\x00\x01",
                    "list": [1, 2, 3], "strs": ["a", "b"], "empty": ""})
    second = tracer.start_span(
        "ledger claim", context=set_span_in_context(first),
        links=[Link(remote, {"k": "v"}), Link(first.get_span_context()),
               Link(SpanContext(1, 2, is_remote=False))])
    second.record_exception(ValueError("boom"))
    second.set_status(Status(StatusCode.ERROR, "bad"))
    second.end()
    first.set_status(Status(StatusCode.OK))
    first.end()
    provider.get_tracer("worker.b").start_span("commit t", kind=SpanKind.PRODUCER).end()
    tracer.start_span("no attributes").end()
    other = TracerProvider(resource=Resource.create({"service.name": "other"}))
    other.add_span_processor(SimpleSpanProcessor(exporter))
    other.get_tracer("worker.a").start_span("elsewhere", kind=SpanKind.SERVER).end()
    return list(exporter.get_finished_spans())


def test_the_request_is_the_sdks_byte_for_byte() -> None:
    spans = _spans()
    assert len(spans) == 5
    ours, sdk = encode(spans), encode_spans(spans)
    assert ExportTraceServiceRequest.FromString(ours) == sdk
    assert ours == sdk.SerializeToString()
    assert encode(spans) == ours  # (again, its attributes from the cache)
    assert len(sdk.resource_spans) == 2  # (two resources, the first of two scopes)
    assert len(sdk.resource_spans[0].scope_spans) == 2


def test_dropped_counts_are_carried() -> None:
    spans = _spans()
    dropped = [s for s in spans if s.dropped_links]
    assert dropped  # (the span limits above drop a link)
    assert encode(dropped) == encode_spans(dropped).SerializeToString()


def test_no_spans_no_resource() -> None:
    assert encode([]) == encode_spans([]).SerializeToString() == b""


def test_an_integer_out_of_int64s_range_is_left_to_the_sdks_encoder() -> None:
    span = ReadableSpan("x", SpanContext(1, 2, is_remote=False), attributes={"huge": 1 << 64})
    with pytest.raises(ValueError):
        encode([span])  # (OTLPExporter.export then hands the batch to the SDK's own)
    assert encode([ReadableSpan("x", SpanContext(1, 2, is_remote=False),
                                attributes={"big": -(1 << 63)})]) == encode_spans(
        [ReadableSpan("x", SpanContext(1, 2, is_remote=False),
                      attributes={"big": -(1 << 63)})]).SerializeToString()


@pytest.mark.parametrize(("key", "offset", "attempt", "event_id"), [
    (b"cust", 7, 1, "evcus_1"),
    (None, 0, 2, "evcus_2"),
    (b"\xff\xfe not utf-8 " * 4, 200, 3, "e"),  # (a two-byte offset)
    (b"k" * 300, 1 << 14, 1, "x" * 200),  # (long strings, a three-byte offset)
    (b"k", 1 << 40, 12, ""),
])
def test_a_call_spans_attributes_are_encoded_as_the_sdk_encodes_them(
        key: bytes | None, offset: int, attempt: int, event_id: str) -> None:
    from worker.events import Event
    from worker.processors.api import Processor
    from worker.tracing.call_attributes import CallAttributes
    from worker.tracing.encoding import EncodedSpan
    from worker.types import LocalMessage

    calls = CallAttributes(Processor(name="p", patterns=("**",), func=lambda e, c: None), "g")
    msg = LocalMessage(b"{}", "topic", 3, offset, key)
    event = Event(id=event_id, type="customer.created", created_at="x")
    for _ in range(2):  # (the second time from what was kept)
        attrs, encoded = calls.make(msg, event, attempt)
        assert attrs == calls.attributes(msg, event, attempt)
        span = EncodedSpan("process p", SpanContext(1, 2, is_remote=False), attributes=attrs,
                           kind=SpanKind.CONSUMER)
        span.encoded_attributes = encoded
        assert encode([span]) == encode_spans([span]).SerializeToString()
