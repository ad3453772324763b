"""What the engine does with a batch its handler is done with, oldest first: write its dead letters
(worker.engine.dead_letter_policy), then store its offsets (decided by worker.engine.offsets) —
or, for a batch that was cancelled or failed, store nothing, cancel every batch behind it and
seek its partitions back to its first offsets, so that no offset passes an event that did not
finish.

The engine does not wait for a batch's dead letters to be acknowledged: it reads and runs the
next batches meanwhile, and they wait behind it to be finished. A DLQ partition whose leader
moves (a broker killed: ~10-15 s) then holds back the offsets of what was read since, not the
consumption of every partition. Past `LETTERS_AHEAD_BATCHES` batches of events in flight (a
handler with a window: its own bound), on a revoke and at shutdown, it waits for the letters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from typing import Any

import structlog

from worker.engine.assignment import Assignment
from worker.engine.consumer_port import ConsumerPort
from worker.engine.dead_letter_policy import DeadLetterPolicy, Sending, Settled
from worker.engine.dead_letter_sink import DeadLetterError
from worker.engine.inflight import Batch, InFlight
from worker.engine.lifecycle import EXIT_ERROR, EXIT_FATAL_PROCESSING, RunCounts, hard_exit
from worker.engine.offsets import OffsetTracker
from worker.engine.transactions import BatchTransactions
from worker.errors import FatalProcessingError
from worker.observer import WorkerObserver
from worker.types import TP, TopicPartition

log = structlog.get_logger(__name__)

#: How far the engine reads on while the oldest finished batch's dead letters are on their way:
#: this many batches (of --batch-size) in flight; a handler with a window, its own in-flight
#: bound (worker.engine.inflight).
LETTERS_AHEAD_BATCHES = 20


class Finishing:
    def __init__(self, consumer: ConsumerPort, parts: Assignment, offsets: OffsetTracker,
                 inflight: InFlight, dead_letters: DeadLetterPolicy, observer: WorkerObserver,
                 counts: RunCounts, *, revoke_timeout: float, batch_size: int,
                 stop: threading.Event,
                 serve: Callable[[], None], fail: Callable[[int, str], None],
                 transactions: BatchTransactions | None = None) -> None:
        """`serve`: the engine keeping its consumer served while it waits; `fail`: stop the
        worker with an exit code and a sentence; `transactions`: exactly-once mode (each
        batch's offsets commit in its transaction, worker.engine.transactions)."""
        self._consumer = consumer
        self._parts = parts
        self._offsets = offsets
        self._inflight = inflight
        self._dead_letters = dead_letters
        self._observer = observer
        self._counts = counts
        self._revoke_timeout = revoke_timeout
        self._stop = stop
        self._serve = serve
        self._fail = fail
        self._txn = transactions
        self.rewinding = False  # a batch was cancelled: the rest in flight is too
        self._read_on = LETTERS_AHEAD_BATCHES * batch_size if inflight.serial else inflight.limit
        # the oldest finished batch and its dead letters on their way
        self._sending: tuple[Batch, Settled | Sending] | None = None
        # False inside a rebalance callback: the consumer is in its own poll there, and a
        # nested poll would break the client's callback state (confluent-kafka aborts the
        # process: "CallState_get: Assertion `cs != NULL' failed")
        self._may_serve = True

    def ready(self, *, wait: bool = False) -> None:
        """Finish every batch the handler is done with, in the order they were read. While the
        oldest one's dead letters are on their way, the rest wait behind it and this returns
        (the engine reads on), unless `wait` (a revoke, shutdown) or too much is in flight:
        then it waits for them, serving the consumer."""
        inflight = self._inflight
        while inflight and inflight.head.done.is_set():
            batch = inflight.head
            if self._letters_on_their_way(batch, wait or inflight.events > self._read_on):
                break
            if inflight and inflight.head is batch:  # (else a revoke in the wait finished it)
                self._finish(inflight.pop())
        if not inflight:
            self.rewinding = False

    def for_rebalance(self) -> None:
        """`ready(wait=True)` inside a rebalance callback: it waits without serving the
        consumer."""
        self._may_serve = False
        try:
            self.ready(wait=True)
        finally:
            self._may_serve = True

    def _letters_on_their_way(self, batch: Batch, wait: bool) -> bool:
        """Start writing the finished `batch`'s dead letters (once); True while they are on
        their way and `wait` is False. Exactly-once mode writes them in the batch's
        transaction, one batch at a time (`_store`)."""
        sending = self._sending
        if sending is None or sending[0] is not batch:
            result = batch.result
            if (self._txn is not None or result is None or not result.dead_letters
                    or not result.completed or self.rewinding):
                return False
            sending = self._sending = (batch, self._dead_letters.start(len(batch.messages),
                                                                      result.dead_letters))
        started = sending[1]
        if isinstance(started, Settled):
            return False
        try:
            if started.delivery.done():
                return False
            if not wait:
                return True
            while not started.delivery.wait(0.05):
                if self._may_serve:  # (what it reads waits for the next batch)
                    self._serve()
        except DeadLetterError:
            pass  # `_store` writes them again
        return False

    def seek_back(self) -> set[TP]:
        """Rewind the partitions of cancelled batches to their first unfinished offsets;
        returns the partitions rewound."""
        seeks = self._offsets.seeks()
        for tp, off in seeks.items():
            if tp not in self._parts.assigned:
                continue
            try:
                self._consumer.seek(tp, off)
            except RuntimeError as exc:
                # Without the seek the events of the cancelled batch would be skipped: stop, so
                # the restart resumes from the last commit instead.
                self._fail(EXIT_ERROR, f"could not rewind {tp[0]}[{tp[1]}] to {off} after a "
                                       f"cancelled batch ({exc}); restart the worker")
        return set(seeks)

    def read_parked_again(self, partitions: Collection[TP]) -> None:
        """The handler says these partitions' parked events may be read again: seek the held
        ones back to their first parked event (applied by `seek_back`; what was fetched or
        waits of them is dropped), one log line."""
        rereads = self._offsets.reread(partitions, self._parts.assigned)
        if rereads:
            self._parts.drop_pending(rereads.keys())
            self._parts.let_back(rereads.keys())
            log.info("reading parked events again", partitions={
                f"{t}[{p}]": off for (t, p), off in sorted(rereads.items())})

    def hold_back_read_ahead(self) -> None:
        """Pause the held partitions read too far ahead of their parked event."""
        over = self._offsets.read_ahead_over()
        if over and not set(over) <= self._parts.held_back:
            log.info("held partitions read ahead as far as allowed; paused until read again",
                     partitions=[f"{t}[{p}]" for t, p in sorted(over)],
                     read_ahead=self._offsets.read_ahead)
            self._parts.hold_back(over)

    def rewound(self, fetched: list[Any]) -> list[Any]:
        """A rewind was decided while `fetched` was read (a revoke's commit aborted, say):
        apply it now; what was fetched of those partitions is read again from there."""
        sought = self.seek_back()
        return [m for m in fetched if (m.topic(), m.partition()) not in sought]

    def step_over_skipped(self) -> None:
        """Store the client's position on partitions whose handed-over records all finished:
        what lies between is what it never hands over (transaction markers, aborted records).
        Not while fetched messages wait or a rewind is under way (the position is ahead of
        them, or stale)."""
        if self._parts.pending or self.rewinding:
            return
        settled = self._offsets.settled(self._parts.assigned)
        if settled:
            offsets = self._offsets.step_over(self._consumer.positions(settled))
            if offsets:
                self._consumer.store(offsets)

    def _finish(self, batch: Batch) -> None:
        """A batch that is not stored holds back every batch behind it: they are cancelled and
        read again."""
        if not self._store(batch):
            if self._txn is not None:
                self._rewind(self._txn.abort())
            self.rewinding = True
            self._inflight.cancel_all()
            if not self._inflight.wait_all(max(5.0, self._revoke_timeout)):
                log.critical("the batch handler did not stop after cancellation; exiting at "
                             "once")
                hard_exit(EXIT_ERROR)

    def _store(self, batch: Batch) -> bool:
        if batch.error is not None:
            err = batch.error
            if isinstance(err, FatalProcessingError):
                self._fail(EXIT_FATAL_PROCESSING, str(err))
            else:
                self._fail(EXIT_ERROR, f"the batch handler raised {type(err).__name__}: {err}")
            return False
        result = batch.result
        assert result is not None
        self._observer.batch_finished(result)
        if not result.completed or self.rewinding:
            # Cancelled (or behind one that was): nothing of it is stored, it is read again.
            self._counts.cancelled_batches += 1
            self._parts.drop_pending(self._offsets.cancelled(batch.first,
                                                             self._parts.assigned))
            return False
        sending, self._sending = self._sending, None
        if sending is not None and sending[0] is batch:  # (started by `_letters_on_their_way`)
            started = sending[1]
            settled = started if isinstance(started, Settled) else self._dead_letters.written(
                started, lambda delay: self._wait_for_dlq(batch, delay))
        else:
            settled = self._dead_letters.settle(
                len(batch.messages), result.dead_letters,
                lambda delay: self._wait_for_dlq(batch, delay))
        if settled.failure is not None:
            self._fail(*settled.failure)
        if not settled.stored:
            return False
        offsets = self._offsets.finished(batch.last, batch.last_ts, len(batch.messages),
                                         self._parts.assigned, batch.first, result.parked)
        if self._txn is not None:
            self._txn.finished(offsets)  # committed with its transaction
        elif offsets:
            self._consumer.store(offsets)
        self._counts.events += len(batch.messages)
        return True

    def commit_transaction(self) -> None:
        """Exactly-once mode: commit the open transaction (Commits' commit, when it is due, on
        revoke, for the drain check and at shutdown); when it aborts instead, its batches are
        read again like cancelled ones."""
        txn = self._txn
        if txn is None or not txn.open:
            return
        offsets = txn.commit(self._parts.assigned)
        if offsets is None:
            self._rewind(txn.abort())
            return
        for tp, offset in offsets:
            self._offsets.confirmed(tp, offset)
            self._observer.record_commit(TopicPartition(*tp), offset)
        self._offsets.committing_all()
        self._counts.commits += 1
        self._observer.record_commit_advance()

    def _rewind(self, first: dict[TP, int]) -> None:
        """An aborted transaction's partitions are read again from where it began."""
        if first:
            self._counts.cancelled_batches += 1
            self._parts.drop_pending(self._offsets.cancelled(first, self._parts.assigned))
            self._offsets.unstore(first)

    def _wait_for_dlq(self, batch: Batch, delay: float) -> bool:
        """While dead letters cannot be written: pause, keep the consumer served for `delay`
        seconds; False once the worker stops or the batch's partitions are gone."""
        self._parts.pause_all()
        until = time.monotonic() + delay
        while time.monotonic() < until and not self._stop.is_set():
            if self._may_serve:
                self._serve()
            time.sleep(0.05)
        return not self._stop.is_set() and bool(batch.last.keys() & self._parts.assigned)
