"""Dead-letter and replay spans, in process (an in-memory exporter, the real pipeline): a dead
letter's span links to the failed call, its context replaces the original one in the letter's
headers, and a replay's span links to it and goes into the replayed record. Against Kafka and a
real Jaeger: test_trace_links.py."""

from __future__ import annotations

from opentelemetry.trace import StatusCode

from tests.processing.test_pipeline import event, never, proc
from tests.tracing.test_sampling import Spans, finished, traced, traced_pipeline, traceparent
from worker import tracing
from worker.errors import NonRetriableError
from worker.events import Event
from worker.kafka.dead_letter_format import full_letter
from worker.processors.api import Context
from worker.types import LocalMessage

__all__ = ["traced"]  # (the fixture)


def test_a_dead_letter_links_to_the_failed_call_and_a_replay_to_the_dead_letter(
        traced: Spans) -> None:
    exporter = traced(0.0)  # nothing sampled: dead letters and failures are recorded anyway
    trace_id, _, headers = traceparent(sampled=False)

    def refuse(e: Event, ctx: Context) -> None:
        raise NonRetriableError("no")

    pipe, _ = traced_pipeline([proc("p", "customer.**", refuse)])
    result = pipe.handle([LocalMessage(event(1), "t", 0, 7, b"k", headers)], never)
    assert result.completed and len(result.dead_letters) == 1
    letter = result.dead_letters[0]
    tracing.dead_letter_spans(result.dead_letters, lambda topic: f"{topic}.dlq")
    tracing.dead_letter_spans(result.dead_letters, lambda topic: f"{topic}.dlq")  # once per letter
    written = full_letter(letter, "now")[2]
    assert [n for n, _ in written].count("traceparent") == 1
    replayed = tracing.replay_span(written, written, "t", "t.dlq")
    assert [n for n, _ in replayed].count("traceparent") == 1

    call, dead, replay = finished(exporter)
    assert (call.name, dead.name, replay.name) == ("process p", "dead_letter p", "replay t")
    assert call.context and dead.context and replay.context
    assert dead.status.status_code is StatusCode.ERROR
    assert f"{dead.context.trace_id:032x}" == trace_id  # in the event's trace
    assert [link.context.span_id for link in dead.links] == [call.context.span_id]
    tp = dict(written)["traceparent"].decode()
    assert tp.split("-")[1:3] == [f"{dead.context.trace_id:032x}",
                                  f"{dead.context.span_id:016x}"]
    assert replay.parent is None  # a new trace, linked
    assert [link.context.span_id for link in replay.links] == [dead.context.span_id]
    tp = dict(replayed)["traceparent"].decode()
    assert tp.split("-")[2] == f"{replay.context.span_id:016x}" and int(tp[-2:], 16) & 1
