"""Spans for dead letters and their replay, recorded at any sampling ratio (marked
`worker.record`, worker.tracing.sampling).

- A dead letter: a PRODUCER span `dead_letter <processor>` (`dead_letter <error class>` for
  an event no processor took: undecodable, unmatched), the child of the event's own context,
  status ERROR, linked to the processor's failed call (worker.tracing.attempts) when there was
  one. Its context replaces the original `traceparent`/`tracestate` in the letter's headers
  (`DeadLetter.trace_headers`, written by worker.kafka.dead_letter_format), so the letter
  points at its dead-letter span.
- A replay (`activity-worker dlq replay`): a PRODUCER span `replay <topic>`, the root of a new
  trace linked to the letter's span; its context replaces the letter's in the replayed
  record, so the worker's calls on the replayed event continue it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from worker.errors import cut
from worker.tracing import attempts
from worker.tracing.config import active, tracer
from worker.tracing.names import KAFKA, Attr, SpanName
from worker.tracing.propagation import extract_kafka, inject_kafka, with_trace
from worker.types import DeadLetter


def _links(context: Any) -> list[Any] | None:
    from opentelemetry.trace import Link, get_current_span

    span_context = get_current_span(context).get_span_context()
    return [Link(span_context)] if span_context.is_valid else None


def dead_letter_spans(letters: Sequence[DeadLetter], topic_for: Callable[[str], str]) -> None:
    """A span per letter not yet given one; its context into `letter.trace_headers`. Nothing
    when tracing is off."""
    if not active():
        return
    from opentelemetry.trace import SpanKind, StatusCode, set_span_in_context

    spans = tracer(__name__)
    for letter in letters:
        if letter.trace_headers is not None:
            continue  # (a write sent again: one span per letter)
        src = letter.source
        topic = src.topic() or ""
        links = None
        if letter.processor:
            failed = attempts.take(attempts.key_of(src, letter.processor))
            links = _links(_context_of(failed)) if failed is not None else None
        attrs: dict[str, Any] = {
            Attr.RECORD: True,
            "messaging.system": KAFKA, "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": topic_for(topic),
            "messaging.kafka.source.topic": topic,
            "messaging.kafka.source.partition": src.partition() or 0,
            "messaging.kafka.source.offset": src.offset() or 0,
            Attr.ERROR_CLASS: letter.error_class,
            Attr.ATTEMPT: letter.attempts,
        }
        if letter.processor:
            attrs[Attr.PROCESSOR] = letter.processor
        span = spans.start_span(f"{SpanName.DEAD_LETTER} {letter.processor or letter.error_class}",
                                context=extract_kafka(src.headers()), kind=SpanKind.PRODUCER,
                                links=links, attributes=attrs)
        span.set_status(StatusCode.ERROR, cut(letter.reason))
        headers: list[tuple[str, bytes]] = []
        inject_kafka(headers, set_span_in_context(span))
        span.end()
        letter.trace_headers = headers


def _context_of(span_context: Any) -> Any:
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context

    return set_span_in_context(NonRecordingSpan(span_context))


def replay_span(letter_headers: Sequence[tuple[str, Any]], headers: Sequence[tuple[str, Any]],
                target: str, dlq_topic: str) -> list[tuple[str, Any]]:
    """A replayed record's `headers`, its trace context replaced by a new `replay <target>`
    span's, linked to the letter's (`letter_headers`). `headers` unchanged when tracing is
    off."""
    if not active():
        return list(headers)
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind, set_span_in_context

    letter = extract_kafka([(k, v) for k, v in letter_headers if isinstance(v, bytes)])
    span = tracer(__name__).start_span(
        f"{SpanName.REPLAY} {target}", context=Context(), kind=SpanKind.PRODUCER,
        links=_links(letter), attributes={
            Attr.RECORD: True, "messaging.system": KAFKA,
            "messaging.operation.type": "send", "messaging.operation.name": "send",
            "messaging.destination.name": target, "messaging.kafka.source.topic": dlq_topic})
    own: list[tuple[str, bytes]] = []
    inject_kafka(own, set_span_in_context(span))
    span.end()
    return with_trace(headers, own)
