"""One batch on its way through the pipeline: what it counted, what it dead-lettered, how long
each processor's calls took, which effects finished, whether the engine has cancelled it, and its
turn to register async effects. The pipeline makes one per batch and hands it down to planning,
the sync calls, the async effects and the ledger calls, instead of threading lists through them.

A ledger outage retries phase 2 of the batch as a whole: each attempt starts from what planning
counted and dead-lettered (`new_attempt`); what a failed attempt counted is dropped.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from worker.errors import NonRetriableError
from worker.events import Event
from worker.outputs import Deliveries, OutputRecord, OutputSink
from worker.processing.batch_trace import BatchSpans
from worker.processors.api import Processor
from worker.types import TP, BatchStats, DeadLetter, Message
from worker.vocabulary import Outcome

log = structlog.get_logger(__name__)


class BatchCancelled(Exception):
    """The engine cancelled the batch (revoke, shutdown): it stops, rolls back what did not
    finish, and is read again."""


class BatchRun:
    __slots__ = ("_planned", "_processors", "_sink", "cancelled", "dead", "deliveries", "done",
                 "held", "held_at", "parked", "stats", "ticket", "timings", "trace", "turn")

    def __init__(self, size: int, processors: int, cancelled: Callable[[], bool],
                 turn: int | None = None, sink: OutputSink | None = None) -> None:
        """`processors`: how many the pipeline has (timings are kept per processor index);
        `turn`: the batch's place in the order async effects are registered
        (worker.processing.effects), None when it has none; `sink`: where emitted records go
        (None: a processor that emits stops the worker, saying so)."""
        self.cancelled = cancelled
        self.turn = turn
        self.ticket = turn  # kept: the batch's place in the read order (worker.processing.parking)
        #: partition -> the first offset of an event whose effect parked in this attempt
        self.parked: dict[TP, int] = {}
        self._sink = sink
        #: idempotency keys of finished effects that emitted records: marked done only once
        #: `deliveries` says every record of the attempt was acknowledged
        self.held: list[str] = []
        self.held_at: list[TP] = []  # the partition each held key's event was read from
        self.deliveries: Deliveries | None = None
        self._processors = processors
        self.stats = BatchStats(batch_size=size)
        self.dead: list[DeadLetter] = []
        #: processor index -> seconds of each of its calls in this attempt
        self.timings: list[list[float]] = []
        #: idempotency keys whose effects finished in this attempt (to mark done)
        self.done: list[str] = []
        self._planned: tuple[BatchStats, list[DeadLetter]] | None = None
        #: the batch's spans (worker.processing.batch_trace), None: not traced
        self.trace: BatchSpans | None = None

    def new_attempt(self) -> None:
        """Start phase 2 (again): planning's counts and dead letters stay, a failed attempt's
        are dropped."""
        if self._planned is None:
            self._planned = (self.stats, self.dead)
        planned, dead = self._planned
        stats = BatchStats(batch_size=planned.batch_size)
        stats.consumed.update(planned.consumed)
        stats.unmatched.update(planned.unmatched)
        stats.dead_letters.update(planned.dead_letters)
        stats.outcomes.update(planned.outcomes)
        stats.latency_seconds.extend(planned.latency_seconds)
        self.stats, self.dead, self.done = stats, list(dead), []
        self.held, self.held_at, self.deliveries = [], [], None
        self.parked = {}
        self.timings = [[] for _ in range(self._processors)]

    def emitted(self, key: str, records: list[OutputRecord], msg: Message) -> None:
        """The effect of `key` finished and emitted `records`: produce them now (in the order
        effects finish) and hold the key until they are acknowledged."""
        sink = self._sink
        if sink is None:
            raise RuntimeError("a processor emitted records (ctx.emit) but this pipeline has no "
                               "output sink; build the Pipeline with outputs=")
        deliveries = self.deliveries
        if deliveries is None:
            deliveries = self.deliveries = Deliveries()
        sink.produce(records, deliveries)
        self.held.append(key)
        self.held_at.append((msg.topic() or "", msg.partition() or 0))

    def park(self, tp: TP, offset: int) -> None:
        """An effect of `tp`'s event at `offset` parked (worker.processing.parking)."""
        x = self.parked.get(tp)
        if x is None or offset < x:
            self.parked[tp] = offset

    def check(self) -> None:
        """Raise BatchCancelled once the engine has cancelled the batch."""
        if self.cancelled():
            raise BatchCancelled

    def take_turn(self) -> int | None:
        """The batch's turn to register async effects, once (None afterwards)."""
        turn, self.turn = self.turn, None
        return turn

    def dead_letter(self, msg: Message, proc: Processor, error_class: str, reason: str,
                    attempts: int = 1, *, every_attempt: bool = False) -> None:
        """Count and keep the dead letter of one (event, processor). `every_attempt`: it stands
        for the attempts still to come too (a key the ledger refuses), like planning's."""
        if every_attempt and self._planned is not None:
            planned, dead = self._planned
            planned.outcomes[(proc.name, Outcome.DEAD_LETTERED)] += 1
            planned.dead_letters[error_class] += 1
            dead.append(DeadLetter(msg, error_class, reason, proc.name, attempts))
            return
        self.stats.outcomes[(proc.name, Outcome.DEAD_LETTERED)] += 1
        self.stats.dead_letters[error_class] += 1
        self.dead.append(DeadLetter(msg, error_class, reason, proc.name, attempts))

    def gave_up(self, msg: Message, event: Event, proc: Processor, error_class: str,
                reason: str, error: BaseException, attempts: int) -> None:
        """The processor's retries ended in a dead letter: keep it, and say so in one log line
        (not for a NonRetriableError, whose event was refused on purpose)."""
        self.dead_letter(msg, proc, error_class, reason, attempts)
        if not isinstance(error, NonRetriableError):
            log.error("processor failed; event dead-lettered", processor=proc.name,
                      event_id=event.id, event_type=event.type, group_id=event.group_id,
                      topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
                      attempts=attempts, error=reason)
