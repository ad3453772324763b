"""What the engine does when the consumer calls back (worker.engine.consumer_port.ConsumerListener):
partitions assigned, revoked or lost, commits confirmed or failed, client errors. Every callback
runs on the engine's main thread, inside one of its consumer calls.

On revoke of a partition held by a batch in flight: wait up to `revoke_timeout` for it, else
cancel it (the handler rolls back), then commit what finished and let go. On loss: cancel at
once, store and commit nothing of it (another member may own it already)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from worker.engine.assignment import Assignment
from worker.engine.commits import Commits
from worker.engine.config import EngineConfig
from worker.engine.connection import Connection
from worker.engine.consumer_port import ClientError
from worker.engine.inflight import InFlight
from worker.engine.lifecycle import EXIT_ERROR, hard_exit
from worker.engine.offsets import OffsetTracker
from worker.observer import WorkerObserver
from worker.types import TP, TopicPartition

log = structlog.get_logger(__name__)


class RebalanceListener:
    def __init__(self, config: EngineConfig, parts: Assignment, offsets: OffsetTracker,
                 inflight: InFlight, commits: Commits, connection: Connection,
                 observer: WorkerObserver, finish_ready: Callable[[], None]) -> None:
        """`finish_ready`: the engine finishing the batches its handler is done with."""
        self._config = config
        self._parts = parts
        self._offsets = offsets
        self._inflight = inflight
        self._commits = commits
        self._connection = connection
        self._observer = observer
        self._finish_ready = finish_ready

    def on_commit(self, committed: list[tuple[TP, int]], *, asynchronous: bool) -> None:
        self._commits.confirmed(committed, asynchronous=asynchronous)

    def on_commit_failed(self, error: str) -> None:
        self._commits.failed(error)

    def on_error(self, error: ClientError) -> None:
        self._connection.on_error(error)

    def on_assign(self, partitions: list[TP]) -> None:
        self._parts.add(partitions, paused=self._parts.halted)
        self._connection.assigned()
        log.info("partitions assigned", partitions=[f"{t}[{p}]" for t, p in partitions])
        self._observer.partitions_assigned([TopicPartition(t, p) for t, p in partitions])
        self._observer.set_assigned(len(self._parts.assigned))

    def on_revoke(self, partitions: list[TP]) -> None:
        gone = set(partitions)
        self._settle_inflight(gone, lost=False)
        try:
            self._commits.send(asynchronous=False,
                               partitions=sorted(gone & self._parts.assigned))
        except Exception as exc:
            log.error("commit on revoke failed; the next owner re-processes from the last "
                      "commit", error=str(exc))
        self._let_go(gone, lost=False)

    def on_lost(self, partitions: list[TP]) -> None:
        gone = set(partitions)
        self._settle_inflight(gone, lost=True)
        self._let_go(gone, lost=True)

    def _settle_inflight(self, gone: set[TP], *, lost: bool) -> None:
        """Make sure no batch in flight touches `gone` partitions any more: wait for them (up to
        revoke_timeout, not at all when lost), else cancel them and wait for the rollback."""
        inflight, timeout = self._inflight, self._config.revoke_timeout
        if not any(gone & b.last.keys() for b in inflight):
            return
        if lost or not inflight.wait_all(timeout):
            inflight.cancel_all()
            if not inflight.wait_all(max(5.0, timeout)):
                # The handler ignores cancellation: letting go now could process an event of a
                # partition another worker owns. Exit at once; the restart resumes from commits.
                log.critical("the batch handler did not stop after cancellation during a "
                             "rebalance; exiting at once")
                hard_exit(EXIT_ERROR)
        if lost:
            # Nothing of a lost partition may be stored; drop them before finishing.
            self._parts.assigned -= gone
        self._finish_ready()

    def _let_go(self, gone: set[TP], *, lost: bool) -> None:
        self._parts.remove(gone)
        self._offsets.forget(gone)
        self._inflight.let_go(gone)
        names = [f"{t}[{p}]" for t, p in sorted(gone)]
        tps = [TopicPartition(t, p) for t, p in sorted(gone)]
        if lost:
            log.warning("partitions lost; nothing committed for them", partitions=names)
            self._observer.partitions_lost(tps)
        else:
            log.info("partitions revoked", partitions=names)
            self._observer.partitions_revoked(tps)
        self._observer.set_assigned(len(self._parts.assigned))
