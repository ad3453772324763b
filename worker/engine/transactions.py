"""Exactly-once mode (`--processing-guarantee exactly-once`): batches commit in Kafka
transactions, their emitted records and consumed offsets together.

The transaction port is what the engine asks of a transactional producer
(`worker.kafka.transactions.TransactionalProducer`); the same producer is the pipeline's output
sink, so the records the batches' processors emit are produced inside the transaction the
engine began for them. In the order batches are read (they never overlap in this mode):

    begin() -> the handler runs a batch (its records produced meanwhile) -> dead letters
    -> (more batches, for up to `interval` seconds)
    -> commit(offsets past the batches, the consumer's group metadata)
       = send_offsets_to_transaction + commit_transaction (KIP-447: a member whose generation
         is stale, a zombie, is refused: its transaction aborts)

A cancelled or failed batch, a dead-letter write that failed, or a commit that failed, timed out
or was fenced: the transaction is aborted and its batches are read again (sought back), exactly
as a cancelled batch is. The consumer itself never commits an offset in this mode.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

import structlog

from worker.types import TP

log = structlog.get_logger(__name__)

#: Backoff while a transaction cannot even begin (no broker, the coordinator moving).
BEGIN_BACKOFF_S = (0.2, 5.0)
#: How long a transaction stays open for more batches (Kafka Streams' exactly-once default).
DEFAULT_TRANSACTION_INTERVAL_S = 0.1


class TransactionFailed(Exception):
    """The transaction did not commit (it was aborted): nothing of the batch is visible to
    read_committed consumers and its offsets were not committed. `fenced`: this producer was
    fenced (another producer took its transactional.id); it starts afresh at the next begin."""

    def __init__(self, message: str, *, fenced: bool = False) -> None:
        super().__init__(message)
        self.fenced = fenced


class TransactionPort(Protocol):
    #: Seconds a transaction may stay open before the broker aborts it (transaction.timeout.ms).
    transaction_timeout: float

    def begin(self) -> None:
        """Start the next batch's transaction (initialising the producer first if needed);
        raises TransactionFailed when it cannot."""

    def commit(self, offsets: Sequence[tuple[TP, int]], group_metadata: Any) -> None:
        """Add the consumed offsets (next to read) with the consumer's group metadata and
        commit; raises TransactionFailed after aborting when it cannot."""

    def abort(self) -> None:
        """Abort the open transaction, if any (never raises)."""


class BatchTransactions:
    """The engine's use of the port. A transaction is begun before the first batch handed over
    after the last commit (retried with the consumer served meanwhile), spans the batches that
    finish until it is due (`interval` seconds after it began, or the loop is idle, or a
    rebalance, a drain check or shutdown asks for a commit), and then commits the offsets past
    all of them. As Kafka Streams does (commit.interval.ms, 100 ms under exactly-once), it
    pays the transaction's round trips once per interval rather than once per batch. An abort
    rewinds every partition of the transaction to where it began (`first`)."""

    def __init__(self, port: TransactionPort, group_metadata: Callable[[], Any],
                 serve: Callable[[], None], stopping: Callable[[], bool],
                 interval: float = DEFAULT_TRANSACTION_INTERVAL_S) -> None:
        self._port = port
        self._group_metadata = group_metadata
        self._serve = serve
        self._stopping = stopping
        self.interval = interval
        self.open = False
        self.committed = 0
        self.aborted = 0
        self._began = 0.0
        #: where the open transaction began reading, per partition (an abort rewinds there)
        self.first: dict[TP, int] = {}
        #: the offsets past its finished batches, per partition (what a commit sends)
        self.offsets: dict[TP, int] = {}

    def begin(self, first: Mapping[TP, int]) -> bool:
        """Before a batch is handed over: begin a transaction unless one is open, and note
        where the batch begins. False when the worker stops first."""
        if not self.open and not self._begin():
            return False
        for tp, offset in first.items():
            self.first.setdefault(tp, offset)
        return True

    def _begin(self) -> bool:
        delay, max_delay = BEGIN_BACKOFF_S
        while True:
            try:
                self._port.begin()
                self.open = True
                self._began = time.monotonic()
                self.first, self.offsets = {}, {}
                return True
            except TransactionFailed as exc:
                log.warning("cannot begin a transaction; trying again", error=str(exc),
                            retry_in_s=round(delay, 2))
            until = time.monotonic() + delay
            while time.monotonic() < until:
                if self._stopping():
                    return False
                self._serve()
                time.sleep(0.02)
            delay = min(delay * 2, max_delay)

    def finished(self, offsets: Sequence[tuple[TP, int]]) -> None:
        """A batch of the open transaction finished: these offsets (past it) go with it."""
        self.offsets.update(offsets)

    def due(self, idle: bool) -> bool:
        return self.open and (idle or time.monotonic() - self._began >= self.interval)

    def commit(self, assigned: Collection[TP]) -> list[tuple[TP, int]] | None:
        """Commit the open transaction with the offsets past its batches (every partition of
        it still `assigned`); returns them, or None when it was aborted instead (one log
        line): then every partition of it must be read again from `first`."""
        self.open = False
        offsets = sorted(self.offsets.items())
        if not offsets or any(tp not in assigned for tp in self.first):
            # nothing finished, or a partition of it was lost meanwhile (another member may
            # own it already): its records must not commit without its offsets
            self.aborted += 1
            log.info("transaction aborted; its batches are read again",
                     lost=sorted(f"{t}[{p}]" for t, p in self.first if (t, p) not in assigned))
            self._port.abort()
            return None
        try:
            self._port.commit(offsets, self._group_metadata())
        except TransactionFailed as exc:
            self.aborted += 1
            seconds = time.monotonic() - self._began
            if seconds >= self._port.transaction_timeout:
                log.error("transaction aborted: it ran longer than the transaction timeout; "
                          "lower --batch-size (or raise transaction.timeout.ms with "
                          "--kafka-config); its batches are read again", error=str(exc),
                          seconds=round(seconds, 1),
                          timeout_s=self._port.transaction_timeout)
            else:
                log.warning("transaction aborted; its batches are read again",
                            error=str(exc), fenced=exc.fenced)
            return None
        self.committed += 1
        return offsets

    def abort(self) -> dict[TP, int]:
        """A batch was not finished (cancelled, failed, its dead letters not written): abort
        the open transaction; returns where each of its partitions must be read again."""
        first = self.first
        if self.open:
            self.open = False
            self.aborted += 1
            log.info("transaction aborted; its batches are read again")
            self._port.abort()
        self.first, self.offsets = {}, {}
        return first
