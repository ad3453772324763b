"""A sampled call's span (worker.tracing.records, made without the SDK's Span), in process: the
child of the record's context, current while the processor runs, with the messaging attributes
and the event's type and id, its failure an ERROR with the SDK's `exception` event, exported
through the provider's batch processor and encoded as the SDK's encoder would."""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.trace import SpanKind, StatusCode, get_current_span

from tests.processing.test_pipeline import event, never, proc
from tests.tracing.test_sampling import Spans, finished, traced, traced_pipeline, traceparent
from worker.events import Event
from worker.processors.api import Context
from worker.tracing.encoding import encode
from worker.types import LocalMessage

__all__ = ["traced"]  # (the fixture)


def test_a_sampled_call_is_the_current_span_a_child_of_the_records_context(
        traced: Spans) -> None:
    exporter = traced(0.0)  # (the record's sampled flag decides)
    trace_id, span_id, headers = traceparent(sampled=True)
    seen: list[Any] = []

    def func(e: Event, ctx: Context) -> None:
        seen.append(get_current_span().get_span_context())
        if len(seen) == 1:
            raise ValueError("boom")

    pipe, _ = traced_pipeline([proc("p", "customer.**", func)])
    assert pipe.handle([LocalMessage(event(7), "t", 2, 7, b"cust", headers)], never).completed
    spans = finished(exporter, "process")
    assert len(spans) == 2 and len(seen) == 2
    failed, ok = spans
    for span, current in zip(spans, seen, strict=True):
        assert span.context == current and current.trace_flags.sampled
        assert f"{current.trace_id:032x}" == trace_id
        assert span.parent is not None and span.parent.is_remote
        assert f"{span.parent.span_id:016x}" == span_id
        assert span.kind is SpanKind.CONSUMER
        assert span.resource.attributes["service.name"] == "test"
        attrs = dict(span.attributes or {})
        assert attrs["messaging.system"] == "kafka"
        assert attrs["messaging.destination.name"] == "t"
        assert attrs["messaging.destination.partition.id"] == "2"
        assert attrs["messaging.kafka.offset"] == 7
        assert attrs["messaging.kafka.message.key"] == "cust"
        assert attrs["messaging.consumer.group.name"] == "g"
        assert attrs["worker.event.id"] == f"evcus_{7:018d}"
        assert attrs["worker.event.type"]
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert dict(failed.events[0].attributes or {})["exception.type"] == "ValueError"
    assert ok.status.status_code is StatusCode.UNSET and not ok.events
    assert failed.context is not None
    assert [link.context.span_id for link in ok.links] == [failed.context.span_id]
    assert get_current_span().get_span_context().is_valid is False  # (detached after)
    assert encode(spans) == encode_spans(spans).SerializeToString()


def test_with_real_confluent_messages_each_sampled_events_calls_are_traced(
        traced: Spans) -> None:
    """confluent-kafka's own Message objects (made in memory), as the worker reads them: the
    sampled flag of each record decides, and the calls traced are exactly those of the records
    flagged sampled, among records that make no work (undecodable, unmatched) and records of
    one and two processors."""
    from confluent_kafka import Message

    exporter = traced(0.0)
    values = [event(0), b"{not json", event(2, "customer.created"), event(3),
              event(4, "voucher.created"), event(5), event(6, "customer.created"), event(7)]
    flags = [True, True, False, None, True, True, False, True]
    parents: dict[int, str] = {}
    messages = []
    for offset, (value, flag) in enumerate(zip(values, flags, strict=True)):
        headers = None
        if flag is not None:
            _, parents[offset], headers = traceparent(sampled=flag)
        messages.append(Message(topic="t", partition=0, offset=offset, key=b"k", value=value,
                                headers=headers))
    calls: list[tuple[str, int]] = []

    def func(name: str) -> Any:
        def call(e: Event, ctx: Context) -> None:
            calls.append((name, int(e.id[-3:])))
        return call

    pipe, _ = traced_pipeline([proc("orders", "customer.order.*", func("orders")),
                               proc("all", "customer.**", func("all"))])
    assert pipe.handle(messages, never).completed
    spans = finished(exporter, "process")
    traced_calls = sorted((s.name, dict(s.attributes or {})["messaging.kafka.offset"])
                          for s in spans)
    assert traced_calls == [("process all", 0), ("process all", 5), ("process all", 7),
                            ("process orders", 0), ("process orders", 5),
                            ("process orders", 7)]
    assert len(calls) == 10  # (every call made, traced or not)
    for span in spans:
        offset = dict(span.attributes or {})["messaging.kafka.offset"]
        assert span.parent is not None and f"{span.parent.span_id:016x}" == parents[offset]
