"""The tracing vocabulary, written once: span names, the worker's own attribute keys and the
W3C header names, as the spans, the dead-letter format, the tests and docs/observability.md use
them."""

from __future__ import annotations

from enum import StrEnum

#: W3C trace context headers (in Kafka records as in HTTP requests).
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_HEADERS = (TRACEPARENT, TRACESTATE)

KAFKA = "kafka"

#: Links per span at most (OpenTelemetry's default OTEL_SPAN_LINK_COUNT_LIMIT).
MAX_LINKS = 128


class SpanName(StrEnum):
    """The first word of each span's name (the rest: a topic, processor or destination)."""

    SEND = "send"                # the ingress storing a delivery: `send <topic>`
    PROCESS = "process"          # one processor call: `process <processor>`
    DEAD_LETTER = "dead_letter"  # an event dead-lettered: `dead_letter <processor>`
    REPLAY = "replay"            # `dlq replay` re-producing a letter: `replay <topic>`
    BATCH = "consume"            # one batch through the pipeline: `consume <topic>`
    LEDGER = "ledger"            # a ledger call of a batch: `ledger claim|mark_done|commit`
    CIRCUIT = "circuit"          # a destination's circuit changing: `circuit <destination>`
    COMMIT = "commit"            # a Kafka offset commit of sampled batches: `commit <topic>`


class Attr(StrEnum):
    """The worker's own span attributes (beside OpenTelemetry's messaging conventions)."""

    PROCESSOR = "worker.processor"
    EVENT_TYPE = "worker.event.type"
    EVENT_ID = "worker.event.id"
    ATTEMPT = "worker.attempt"
    ERROR_CLASS = "worker.error.class"
    LINKS_DROPPED = "worker.links.dropped"
    DESTINATION = "worker.destination"
    STATE = "worker.circuit.state"
    STATE_BEFORE = "worker.circuit.state.before"
    #: Set by the worker on a span to be recorded whatever the sampler says (a failure, a dead
    #: letter); worker.tracing.sampling removes it from the recorded attributes.
    RECORD = "worker.record"
