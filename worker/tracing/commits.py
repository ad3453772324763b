"""A span per Kafka offset commit that covers sampled batches: `commit <topic>`, made when the
broker confirms the commit (the engine's observer hooks, worker.observer: the engine knows no
tracing), linked to the `consume` span of each sampled batch whose offsets it committed and to
those batches' events' contexts (at most worker.tracing.names.MAX_LINKS in all). A commit
that covers no sampled batch makes no span.

Bounded: a batch whose offsets are never confirmed here (its partition revoked or lost) is
dropped with its partition, and at most `PENDING` batches wait per partition."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from worker.observer import WorkerObserver
from worker.tracing.config import tracer
from worker.tracing.names import KAFKA, MAX_LINKS, SpanName
from worker.types import Message, TopicPartition

#: Sampled batches waiting for their commit, per partition, at most.
PENDING = 1_000

TP = tuple[str, int]


class CommitTracing(WorkerObserver):
    def __init__(self, group: str) -> None:
        from opentelemetry.trace import Link

        self.group = group
        self._link = Link
        self._lock = threading.Lock()
        self._pending: dict[TP, list[tuple[int, Any, list[Any]]]] = {}
        self._ready: list[tuple[Any, list[Any]]] = []  # (batch span context, its event links)
        self._topics: set[str] = set()

    def batch_done(self, messages: Sequence[Message], span_context: Any,
                   links: list[Any]) -> None:
        """A sampled batch completed: it waits for the commit past its last offsets."""
        ends: dict[TP, int] = {}
        for msg in messages:
            tp = (msg.topic() or "", msg.partition() or 0)
            end = (msg.offset() or 0) + 1
            if end > ends.get(tp, -1):
                ends[tp] = end
        with self._lock:
            for tp, end in ends.items():
                waiting = self._pending.setdefault(tp, [])
                waiting.append((end, span_context, links))
                del waiting[:-PENDING]

    # -- the engine's hooks ------------------------------------------------------------------
    def record_commit(self, tp: TopicPartition, offset: int) -> None:
        key = (tp.topic, tp.partition)
        with self._lock:
            waiting = self._pending.get(key)
            if not waiting:
                return
            done = [w for w in waiting if w[0] <= offset]
            if done:
                self._pending[key] = [w for w in waiting if w[0] > offset]
                self._ready.extend((ctx, links) for _, ctx, links in done)
                self._topics.add(tp.topic)

    def record_commit_advance(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            topics, self._topics = self._topics, set()
        if not ready:
            return
        from opentelemetry.context import Context

        # each batch once (a batch of several partitions is ready once per partition)
        unique = {ctx.span_id: (ctx, events) for ctx, events in ready}
        links = [self._link(ctx) for ctx, _ in unique.values()]
        batches = len(links)
        for _, events in unique.values():
            links.extend(events[:max(0, MAX_LINKS - len(links))])
        topic = ",".join(sorted(topics))
        span = tracer(__name__).start_span(
            f"{SpanName.COMMIT} {topic}", context=Context(), links=links[:MAX_LINKS],
            attributes={"messaging.system": KAFKA, "messaging.operation.type": "settle",
                        "messaging.operation.name": "commit",
                        "messaging.destination.name": topic,
                        "messaging.consumer.group.name": self.group,
                        "worker.batches": batches})
        span.end()

    def partitions_revoked(self, tps: Sequence[TopicPartition]) -> None:
        self._forget(tps)

    def partitions_lost(self, tps: Sequence[TopicPartition]) -> None:
        self._forget(tps)

    def _forget(self, tps: Sequence[TopicPartition]) -> None:
        with self._lock:
            for tp in tps:
                self._pending.pop((tp.topic, tp.partition), None)
