"""Exactly-once mode (`--processing-guarantee exactly-once`): each batch is one Kafka transaction.

The transaction port is what the engine asks of a transactional producer
(`worker.kafka.transactions.TransactionalProducer`); the same producer is the pipeline's output
sink, so the records the batch's processors emit are produced inside the transaction the engine
began for the batch. Per batch, in the order batches are read (they never overlap in this mode):

    begin() -> the handler runs the batch (its records produced meanwhile) -> dead letters
    -> commit(offsets past the batch, the consumer's group metadata)
       = send_offsets_to_transaction + commit_transaction (KIP-447: a member whose generation
         is stale, a zombie, is refused: its transaction aborts)

A cancelled or failed batch, a dead-letter write that failed, or a commit that failed, timed out
or was fenced: the transaction is aborted and the batch is read again (sought back), exactly as
a cancelled batch is. The consumer itself never commits an offset in this mode.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog

from worker.types import TP

log = structlog.get_logger(__name__)

#: Backoff while a transaction cannot even begin (no broker, the coordinator moving).
BEGIN_BACKOFF_S = (0.2, 5.0)


class TransactionFailed(Exception):
    """The transaction did not commit (it was aborted): nothing of the batch is visible to
    read_committed consumers and its offsets were not committed. `fenced`: this producer was
    fenced (another producer took its transactional.id); it starts afresh at the next begin."""

    def __init__(self, message: str, *, fenced: bool = False) -> None:
        super().__init__(message)
        self.fenced = fenced


class TransactionPort(Protocol):
    def begin(self) -> None:
        """Start the next batch's transaction (initialising the producer first if needed);
        raises TransactionFailed when it cannot."""

    def commit(self, offsets: Sequence[tuple[TP, int]], group_metadata: Any) -> None:
        """Add the consumed offsets (next to read) with the consumer's group metadata and
        commit; raises TransactionFailed after aborting when it cannot."""

    def abort(self) -> None:
        """Abort the open transaction, if any (never raises)."""


class BatchTransactions:
    """The engine's use of the port: one transaction per batch, begun before the batch is handed
    over (retried with consumption served meanwhile), committed or aborted when it is
    finished."""

    def __init__(self, port: TransactionPort, group_metadata: Callable[[], Any],
                 serve: Callable[[], None], stopping: Callable[[], bool]) -> None:
        self._port = port
        self._group_metadata = group_metadata
        self._serve = serve
        self._stopping = stopping
        self.open = False
        self.committed = 0
        self.aborted = 0

    def begin(self) -> bool:
        """Begin the next batch's transaction; False when the worker stops first."""
        delay, max_delay = BEGIN_BACKOFF_S
        while True:
            try:
                self._port.begin()
                self.open = True
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

    def commit(self, offsets: Sequence[tuple[TP, int]]) -> bool:
        """Commit the batch's transaction with `offsets`; False when it was aborted instead
        (one log line), and the batch must be read again."""
        self.open = False
        try:
            self._port.commit(offsets, self._group_metadata())
        except TransactionFailed as exc:
            self.aborted += 1
            log.warning("transaction aborted; the batch is read again",
                        error=str(exc), fenced=exc.fenced)
            return False
        self.committed += 1
        return True

    def abort(self) -> None:
        if self.open:
            self.open = False
            self.aborted += 1
            self._port.abort()
