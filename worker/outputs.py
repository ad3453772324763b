"""Records processors emit (`ctx.emit`), and the output sink port that writes them.

The processing half produces a call's records as soon as the call succeeded (so one ordering
key's records leave in the order its effects finished, across batches too), and counts their
acknowledgements in the batch's `Deliveries`. The at-least-once rule: an emitting effect is
marked done in the ledger only after every record of its batch was acknowledged by the broker
(worker.processing.ledger_calls); a crash in between leaves it unmarked, so the redelivered
event emits again (a possible repeat, never a loss).

`worker.kafka.output_producer.OutputProducer` implements the sink over Kafka (idempotent,
acks=all); in exactly-once mode its records are produced inside the batch's transaction
(worker.kafka.transactions). Neither the engine nor the processing half knows the client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from worker.errors import WorkerError
from worker.types import TP, Headers

#: How often a wait for acknowledgements checks whether the batch was cancelled (seconds).
WAIT_STEP_S = 0.05


class OutputUnavailable(WorkerError):
    """Emitted records were not acknowledged (the broker is away, a topic is missing, a record
    too large): the batch's emitting effects stay unmarked and the batch runs again after a
    backoff, like during a ledger outage."""


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One record a processor emitted: produced to `topic`, keyed by `key` (records of one key
    land in one partition, in the order they were emitted)."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: Headers | None = None


class Deliveries:
    """The acknowledgements a batch waits for (thread-safe: the sink's delivery reports arrive on
    the client's thread)."""

    __slots__ = ("_cond", "error", "pending", "sent")

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.pending = 0
        self.sent = 0
        self.error: str | None = None

    def expect(self, n: int) -> None:
        with self._cond:
            self.pending += n
            self.sent += n

    def report(self, error: str | None) -> None:
        """One record's delivery report (None: acknowledged)."""
        with self._cond:
            self.pending -= 1
            if error is not None and self.error is None:
                self.error = error
            if self.pending <= 0 or error is not None:
                self._cond.notify_all()

    def wait(self, cancelled: Callable[[], bool], bound: float | None = None) -> bool:
        """Until every record is acknowledged (True), the batch is cancelled (False), or `bound`
        seconds passed (False). Raises OutputUnavailable when a record failed."""
        deadline = None if bound is None else time.monotonic() + bound
        with self._cond:
            while True:
                if self.error is not None:
                    raise OutputUnavailable(f"an emitted record was not stored: {self.error}")
                if self.pending <= 0:
                    return True
                if cancelled() or (deadline is not None and time.monotonic() >= deadline):
                    return False
                self._cond.wait(WAIT_STEP_S)


class OutputSink(Protocol):
    """Where emitted records go (worker.kafka.output_producer.OutputProducer)."""

    def produce(self, records: Sequence[OutputRecord], deliveries: Deliveries) -> None:
        """Hand `records` to the client in order, without waiting for the broker; each one's
        acknowledgement (or failure) is reported to `deliveries`. Raises OutputUnavailable if
        they cannot even be queued."""

    def close(self) -> None: ...


class EmittedMarks(Protocol):
    """Exactly-once mode: the done marks of emitting effects, kept where the records go
    (worker.kafka.emitted_marks: a compacted topic written in the batch's transaction), so a
    mark commits or aborts with the records it stands for."""

    def emitted(self, partition: TP, key: str) -> bool:
        """Whether the effect of `key`, of an event read from `partition`, emitted in a
        committed transaction (or in the open one)."""

    def mark(self, marks: Sequence[tuple[TP, str]]) -> None:
        """Mark these (partition, key) effects emitted, inside the open transaction."""
