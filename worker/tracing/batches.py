"""Spans for one batch through the pipeline (worker.processing.batch_trace's port): a CONSUMER
span `consume <topic>` from the batch's hand-over to its result, and under it a span per ledger
call — `ledger claim`, `ledger mark_done`, `ledger release`, `ledger commit`, `ledger
rollback` — each linked to the contexts of the batch's events (the `traceparent` in their
headers), so a trace of one event leads to the batch work it waited for, and back.

A batch is a root: the sampler's ratio decides per batch (a batch not sampled costs one random
draw). Links are capped at `MAX_LINKS` per span, OpenTelemetry's default span limit
(OTEL_SPAN_LINK_COUNT_LIMIT); a batch of more events links its first `MAX_LINKS` and says how
many it left out in `worker.links.dropped`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from worker.errors import describe
from worker.ledger.base import ClaimState, LedgerSession
from worker.processors.api import Processor
from worker.tracing.calls import CallTracing
from worker.tracing.commits import CommitTracing
from worker.tracing.config import root_ratio, tracer
from worker.tracing.names import KAFKA, MAX_LINKS, Attr, SpanName
from worker.tracing.propagation import extract_kafka
from worker.tracing.spans import sampled_flag
from worker.types import Message


class BatchTracing:
    """Implements worker.processing.batch_trace.BatchTracer: the batch spans here, the call
    spans of `processors` (the pipeline's, in its order) in worker.tracing.calls."""

    def __init__(self, group: str, processors: Sequence[Processor]) -> None:
        from opentelemetry.trace import Link, SpanKind, get_current_span

        self.calls = calls = CallTracing(processors, group)
        self.commits = CommitTracing(group)  # an observer of the engine's commits
        self.choose, self.trace, self.failed = calls.choose, calls.trace, calls.failed
        self.group = group
        self.tracer = tracer(__name__)
        self.ratio = root_ratio()
        self.rand = random.random
        self._link, self._kind, self._span_of = Link, SpanKind.CONSUMER, get_current_span

    def begin(self, messages: Sequence[Message]) -> _Batch | None:
        ratio = self.ratio
        force = ratio is not None and ratio < 1.0
        if force and self.rand() >= (ratio or 0.0):
            return None
        topic = (messages[0].topic() or "") if messages else ""
        attrs: dict[str, Any] = {"messaging.system": KAFKA,
                                 "messaging.operation.type": "receive",
                                 "messaging.operation.name": "consume",
                                 "messaging.destination.name": topic,
                                 "messaging.consumer.group.name": self.group,
                                 "messaging.batch.message_count": len(messages)}
        if force:
            attrs[Attr.RECORD] = True  # (the ratio decided here)
        links = self._links(messages)
        if len(messages) > MAX_LINKS:
            attrs[Attr.LINKS_DROPPED] = len(messages) - MAX_LINKS
        span = self.tracer.start_span(f"{SpanName.BATCH} {topic}", kind=self._kind,
                                      links=links, attributes=attrs)
        if not span.is_recording():
            span.end()
            return None
        return _Batch(self.tracer, span, links, messages, self.commits)

    def _links(self, messages: Sequence[Message]) -> list[Any]:
        links = []
        for msg in messages[:MAX_LINKS]:
            headers = msg.headers()
            if sampled_flag(headers) is None:
                continue  # (no trace context)
            context = self._span_of(extract_kafka(headers)).get_span_context()
            if context.is_valid:
                links.append(self._link(context))
        return links


class _Batch:
    """Implements worker.processing.batch_trace.BatchSpans."""

    def __init__(self, spans: Any, span: Any, links: list[Any], messages: Sequence[Message],
                 commits: CommitTracing) -> None:
        from opentelemetry.trace import StatusCode, set_span_in_context

        self._spans, self.span, self.links = spans, span, links
        self._messages, self._commits = messages, commits
        self._parent = set_span_in_context(span)
        self._error = StatusCode.ERROR

    @contextmanager
    def call(self, op: str) -> Iterator[Any]:
        span = self._spans.start_span(f"{SpanName.LEDGER} {op}", context=self._parent,
                                      links=self.links)
        try:
            yield span
        except BaseException as exc:
            span.set_status(self._error, describe(exc))
            raise
        finally:
            span.end()

    def session(self, session: LedgerSession) -> LedgerSession:
        return _TracedSession(session, self)

    def end(self, completed: bool, error: BaseException | None = None) -> None:
        if error is not None:
            self.span.set_status(self._error, describe(error))
        self.span.set_attribute("worker.batch.completed", completed)
        self.span.end()
        if completed:  # its commit links to it
            self._commits.batch_done(self._messages, self.span.get_span_context(), self.links)


class _TracedSession:
    """A ledger session whose calls are spans of the batch (implements LedgerSession)."""

    def __init__(self, session: LedgerSession, batch: _Batch) -> None:
        self._session, self._batch = session, batch

    @property
    def transaction(self) -> Any | None:
        return self._session.transaction

    def claim(self, keys: Sequence[str]) -> list[ClaimState]:
        with self._batch.call("claim") as span:
            span.set_attribute("worker.ledger.keys", len(keys))
            return self._session.claim(keys)

    def savepoint(self) -> AbstractContextManager[None]:
        return self._session.savepoint()

    def mark_done(self, keys: Sequence[str]) -> None:
        with self._batch.call("mark_done") as span:
            span.set_attribute("worker.ledger.keys", len(keys))
            self._session.mark_done(keys)

    def release(self, keys: Sequence[str]) -> None:
        with self._batch.call("release") as span:
            span.set_attribute("worker.ledger.keys", len(keys))
            self._session.release(keys)

    def commit(self) -> None:
        with self._batch.call("commit"):
            self._session.commit()

    def rollback(self) -> None:
        with self._batch.call("rollback"):
            self._session.rollback()
