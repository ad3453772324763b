"""Commits: sending what the offset tracker (worker.engine.offsets) says may be committed, and
taking in what the broker confirmed. Asynchronous while consuming; synchronous for revoked
partitions inside the revoke callback, for the drain check and at shutdown.

One asynchronous commit is in flight at a time: the next is sent only once the broker answered
the last. librdkafka retries a commit that meets a broker outage, and with several in flight a
retried older one can land after a newer one and move the committed offset back (seen once in
the cluster soak: a partition went back by 1,000). Waiting costs nothing: the next commit sends
whatever was stored meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog

from worker.engine.consumer_port import CommitFailed, ConsumerPort
from worker.engine.lifecycle import RunCounts
from worker.engine.offsets import Confirmed, OffsetTracker
from worker.observer import WorkerObserver
from worker.types import TP, TopicPartition

log = structlog.get_logger(__name__)

ASYNC_COMMIT_PATIENCE_S = 60.0
"""How long an asynchronous commit may go unanswered before the next is sent anyway: librdkafka
answers every commit, within its socket timeout (60 s by default); this bounds a lost answer."""

SETTLE_ASYNC_COMMIT_S = 5.0
"""How long a synchronous commit (drain, shutdown) first waits for an unanswered asynchronous
one, so the older cannot land after it."""


class Commits:
    def __init__(self, consumer: ConsumerPort, offsets: OffsetTracker,
                 observer: WorkerObserver, counts: RunCounts,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._consumer = consumer
        self._offsets = offsets
        self._observer = observer
        self._counts = counts
        self._clock = clock
        self._async_since: float | None = None  # when the unanswered asynchronous commit left
        #: Exactly-once mode: offsets commit in transactions (worker.engine.transactions),
        #: never through the consumer; every commit asked for commits the open transaction.
        self.transactional: Callable[[], None] | None = None

    @property
    def awaiting_answer(self) -> bool:
        """An asynchronous commit was sent and the broker has not answered it yet."""
        return self._async_since is not None

    def sync(self) -> None:
        self.send(asynchronous=False)

    def sync_after_pending(self, serve: Callable[[], None]) -> None:
        """Commit what is stored and wait for the answer; an asynchronous commit still
        unanswered is waited for first (bounded, `serve` keeping the consumer served), so that
        it cannot land after this one."""
        deadline = time.monotonic() + SETTLE_ASYNC_COMMIT_S
        while self.awaiting_answer and time.monotonic() < deadline:
            serve()
            time.sleep(0.002)
        self.sync()

    def send(self, *, asynchronous: bool, partitions: Sequence[TP] | None = None) -> None:
        """Everything stored (or, on revoke, just these partitions, synchronously); a failed
        synchronous commit raises CommitFailed, an asynchronous one is logged and retried by
        the next. An asynchronous one waits while the last is unanswered."""
        if self.transactional is not None:
            self.transactional()
            return
        if asynchronous and self._async_since is not None:
            waited = self._clock() - self._async_since
            if waited < ASYNC_COMMIT_PATIENCE_S:
                return
            log.warning("an asynchronous commit went unanswered; sending the next one anyway",
                        waited_s=round(waited, 1))
        offsets = None
        if partitions is None:
            if not self._offsets.uncommitted:
                return
        else:
            offsets = self._offsets.to_commit(partitions)
            if not offsets:
                return
        if asynchronous:
            self._async_since = self._clock()
        try:
            self._consumer.commit(offsets, asynchronous=asynchronous)
        except CommitFailed as exc:
            log.error("commit failed", error=str(exc), asynchronous=asynchronous)
            if not asynchronous:
                raise
            self._async_since = None
            return
        if offsets is None:
            self._offsets.committing_all()
        else:
            self._offsets.committed_partitions()
        self._counts.commits += 1

    def confirmed(self, committed: list[tuple[TP, int]], *, asynchronous: bool) -> None:
        """The broker confirmed these offsets (the port's on_commit)."""
        if asynchronous:
            self._async_since = None
        advanced = False
        for tp, offset in committed:
            outcome = self._offsets.confirmed(tp, offset)
            if outcome is Confirmed.ADVANCED:
                advanced = True
                self._observer.record_commit(TopicPartition(*tp), offset)
            elif outcome is Confirmed.WENT_BACK:
                log.warning("an older commit was confirmed after a newer one (a commit retried "
                            "across a coordinator change); committing the newer offset again",
                            partition=f"{tp[0]}[{tp[1]}]", offset=offset)
        if advanced:
            self._observer.record_commit_advance()

    def failed(self, error: str) -> None:
        """An asynchronous commit failed (the port's on_commit_failed): what is stored goes out
        again at the next commit tick, even if no new event finishes."""
        self._async_since = None
        self._offsets.commit_again()
        log.warning("offset commit failed; committing again at the next tick", error=error)
