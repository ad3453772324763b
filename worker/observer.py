"""What the worker tells about its run, in one direction: the engine (and its dead-letter policy)
call these hooks; metrics, health, the exit summary and tests are observers that override the
hooks they care about. Nothing calls back, and nobody checks for an absent observer: the engine
holds an `Observers` fan-out, empty or not.

Each hook is called from the engine's main thread, once per batch, rebalance, commit
confirmation or loop turn — never per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from worker.types import BatchResult, TopicPartition


class WorkerObserver:
    """Every hook, as a no-op."""

    # -- per batch ---------------------------------------------------------------------------
    def batch_finished(self, result: BatchResult) -> None:
        """The handler returned (completed or cancelled); `result.stats` has its counts."""

    # -- partitions ----------------------------------------------------------------------------
    def partitions_assigned(self, tps: Sequence[TopicPartition]) -> None: ...
    def partitions_revoked(self, tps: Sequence[TopicPartition]) -> None: ...
    def partitions_lost(self, tps: Sequence[TopicPartition]) -> None: ...
    def set_assigned(self, count: int) -> None:
        """How many partitions the worker holds now."""

    def record_lag(self, tp: TopicPartition, lag_offsets: int, lag_seconds: float) -> None: ...
    def record_open_transaction(self, tp: TopicPartition, seconds: float) -> None:
        """A transaction left open upstream has held `tp`'s last stable offset for `seconds`
        (0: no longer)."""

    def record_commit(self, tp: TopicPartition, offset: int) -> None:
        """The broker confirmed a commit that moved `tp` forward."""

    def record_commit_advance(self) -> None:
        """At least one partition's commit moved forward (once per confirmation)."""

    # -- the loop ------------------------------------------------------------------------------
    def heartbeat(self) -> None:
        """The poll loop turned."""

    def record_traffic(self) -> None:
        """A batch is about to run."""

    def set_connected(self, connected: bool) -> None: ...

    # -- dead letters --------------------------------------------------------------------------
    def guardrail_tripped(self) -> None: ...
    def dlq_write(self, ok: bool, shrunk: int = 0) -> None:
        """A batch's dead letters were written (ok) or could not be; `shrunk` of them cut."""

    def set_dlq_writable(self, ok: bool) -> None: ...


class Observers(WorkerObserver):
    """Hands each hook to every observer, in order."""

    def __init__(self, observers: Iterable[WorkerObserver] = ()) -> None:
        self.observers = tuple(observers)

    def batch_finished(self, result: BatchResult) -> None:
        for o in self.observers:
            o.batch_finished(result)

    def partitions_assigned(self, tps: Sequence[TopicPartition]) -> None:
        for o in self.observers:
            o.partitions_assigned(tps)

    def partitions_revoked(self, tps: Sequence[TopicPartition]) -> None:
        for o in self.observers:
            o.partitions_revoked(tps)

    def partitions_lost(self, tps: Sequence[TopicPartition]) -> None:
        for o in self.observers:
            o.partitions_lost(tps)

    def set_assigned(self, count: int) -> None:
        for o in self.observers:
            o.set_assigned(count)

    def record_lag(self, tp: TopicPartition, lag_offsets: int, lag_seconds: float) -> None:
        for o in self.observers:
            o.record_lag(tp, lag_offsets, lag_seconds)

    def record_open_transaction(self, tp: TopicPartition, seconds: float) -> None:
        for o in self.observers:
            o.record_open_transaction(tp, seconds)

    def record_commit(self, tp: TopicPartition, offset: int) -> None:
        for o in self.observers:
            o.record_commit(tp, offset)

    def record_commit_advance(self) -> None:
        for o in self.observers:
            o.record_commit_advance()

    def heartbeat(self) -> None:
        for o in self.observers:
            o.heartbeat()

    def record_traffic(self) -> None:
        for o in self.observers:
            o.record_traffic()

    def set_connected(self, connected: bool) -> None:
        for o in self.observers:
            o.set_connected(connected)

    def guardrail_tripped(self) -> None:
        for o in self.observers:
            o.guardrail_tripped()

    def dlq_write(self, ok: bool, shrunk: int = 0) -> None:
        for o in self.observers:
            o.dlq_write(ok, shrunk)

    def set_dlq_writable(self, ok: bool) -> None:
        for o in self.observers:
            o.set_dlq_writable(ok)
