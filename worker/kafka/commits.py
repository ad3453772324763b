"""Commits: sending what the offset tracker (worker.kafka.offsets) says may be committed, and
taking in what the broker confirmed. Asynchronous while consuming; synchronous for revoked
partitions inside the revoke callback, for the drain check and at shutdown."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from worker.kafka.lifecycle import RunCounts
from worker.kafka.offsets import Confirmed, OffsetTracker
from worker.kafka.port import TP, CommitFailed, ConsumerPort
from worker.observer import WorkerObserver
from worker.types import TopicPartition

log = structlog.get_logger("worker.engine")


class Commits:
    def __init__(self, consumer: ConsumerPort, offsets: OffsetTracker,
                 observer: WorkerObserver, counts: RunCounts) -> None:
        self._consumer = consumer
        self._offsets = offsets
        self._observer = observer
        self._counts = counts

    def sync(self) -> None:
        self.send(asynchronous=False)

    def send(self, *, asynchronous: bool, partitions: Sequence[TP] | None = None) -> None:
        """Everything stored (or, on revoke, just these partitions, synchronously); a failed
        synchronous commit raises CommitFailed, an asynchronous one is logged and retried by
        the next."""
        offsets = None
        if partitions is None:
            if not self._offsets.uncommitted:
                return
        else:
            offsets = self._offsets.to_commit(partitions)
            if not offsets:
                return
        try:
            self._consumer.commit(offsets, asynchronous=asynchronous)
        except CommitFailed as exc:
            log.error("commit failed", error=str(exc), asynchronous=asynchronous)
            if not asynchronous:
                raise
            return
        if offsets is None:
            self._offsets.committing_all()
        else:
            self._offsets.committed_partitions()
        self._counts.commits += 1

    def confirmed(self, committed: list[tuple[TP, int]]) -> None:
        """The broker confirmed these offsets (the port's on_commit)."""
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
