"""The pipeline's batch window (worker.types.BatchWindow): several batches in flight at once,
each handled on a thread of a pool of its own while the engine reads the next ones. Only when
every processor is async (sync ones run in batch order) and the ledger takes concurrent
sessions (memory, Redis; a SQL ledger's session is one transaction at a time).

Each batch takes its turn to register its async effects when it is submitted, so a key's
effects run in offset order across batches (worker.processing.effects). Effects waiting for a
destination down past --park-after park (worker.processing.parking), so a waiting batch does not
hold a thread for the length of an outage; `rereads` and `let_go` are the engine's side of it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from worker.processing.effects import ConcurrentEffects
from worker.types import TP, BatchResult, Message

#: Threads handling batches at once; far more than batches ever wait in the window.
BATCH_THREADS = 32

Handle = Callable[[Sequence[Message], Callable[[], bool], int | None], BatchResult]


class OverlappingBatches:
    def __init__(self, handle: Handle, effects: ConcurrentEffects) -> None:
        """`handle(messages, cancelled, turn)`: the pipeline's handling of one batch."""
        self._handle = handle
        self._effects = effects
        self._pool: ThreadPoolExecutor | None = None
        # Work not done (pending()) up to 16 x max_in_flight, so that nearly every key has its
        # next effect queued when one ends (measured: 4x leaves ~20% of 1,000 keys idle at any
        # time, 16x ~10% with partitions of uneven key counts); events of batches not finished
        # yet up to 4 times that (a batch finishes once its slowest key got to it), so memory
        # stays bounded.
        self.max_pending = 16 * effects.max_in_flight
        self.max_events_in_flight = 64 * effects.max_in_flight

    def submit(self, messages: Sequence[Message], cancelled: Callable[[], bool]
               ) -> Future[BatchResult]:
        """Handle a batch in the background; call in the order the batches were read."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=BATCH_THREADS,
                                            thread_name_prefix="batch")
        return self._pool.submit(self._handle, messages, cancelled,
                                 self._effects.ticket(len(messages)))

    def pending(self) -> int:
        """Work handed over and not done, in messages and effects."""
        return self._effects.pending()

    def rereads(self) -> list[TP]:
        """Partitions whose parked events may be read again now (worker.processing.parking)."""
        return self._effects.parking.rereads()

    def let_go(self, partitions: Collection[TP]) -> None:
        self._effects.parking.forget(partitions)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
