"""Core value types shared by every layer, independent of any Kafka client.

`Message` is the shape of one consumed record. It deliberately mirrors the method
API of `confluent_kafka.Message` (`value()`, `topic()`, ...), so the engine hands
the client's own objects to the pipeline without copying them (no per-event
allocation on the hot path), while tests and the in-memory harness use
`LocalMessage`. Nothing outside `worker.kafka` imports confluent_kafka.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

Headers = list[tuple[str, bytes]]

#: A partition as the engine and its ports name it: (topic, partition). `TopicPartition` below
#: is the same pair as a value for observers and people (it prints as `topic[partition]`).
TP = tuple[str, int]


class Message(Protocol):
    """One record read from a topic partition (structural match of confluent_kafka.Message)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Headers | None: ...
    def timestamp(self) -> tuple[int, int]: ...


@dataclass(slots=True)
class LocalMessage:
    """A `Message` made in memory: for unit tests, the harness and replaying files."""

    _value: bytes | None
    _topic: str = "customer-activity"
    _partition: int = 0
    _offset: int = 0
    _key: bytes | None = None
    _headers: Headers | None = None
    _timestamp_ms: int = 0

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Headers | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        # (TIMESTAMP_CREATE_TIME, ms) like confluent-kafka; 0 type means "not available".
        return (1 if self._timestamp_ms else 0, self._timestamp_ms)

    def error(self) -> None:
        """A record, never a consumer error event (confluent_kafka.Message's error())."""
        return None


@dataclass(frozen=True, slots=True)
class TopicPartition:
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


@dataclass(slots=True)
class DeadLetter:
    """A record to write to the dead-letter topic: the original bytes plus why.

    Header names written for it are `worker.*` (see worker.kafka.dead_letter_producer):
    error class, reason (with the JSON path where there is one), processor,
    source topic/partition/offset, attempt count and time.
    """

    source: Message
    error_class: str
    reason: str
    processor: str | None = None
    attempts: int = 1
    extra_headers: Headers = field(default_factory=list)
    #: The dead-letter span's trace context (worker.tracing.dead_letters), replacing the
    #: original record's `traceparent`/`tracestate` in the letter; None: tracing is off.
    trace_headers: Headers | None = None


@dataclass(slots=True)
class BatchStats:
    """One batch's counts, aggregated in plain dicts on the hot path and folded into the
    metrics once per batch (no `labels()` call per event)."""

    batch_size: int = 0
    # topic -> events consumed
    consumed: Counter[str] = field(default_factory=Counter)
    # (processor, worker.vocabulary.Outcome) -> count
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    # event type -> events that matched no processor
    unmatched: Counter[str] = field(default_factory=Counter)
    # worker.vocabulary.ErrorClass -> dead letters
    dead_letters: Counter[str] = field(default_factory=Counter)
    # processor -> seconds of each call in this batch
    processing_seconds: dict[str, list[float]] = field(default_factory=dict)
    # now minus the Kafka timestamp, per event that has one (seconds)
    latency_seconds: list[float] = field(default_factory=list)
    # ledger operation (claim, mark_done, commit, ...) -> seconds of each call, failed ones too
    # (including the attempts of a batch retried while the ledger was down)
    ledger_seconds: dict[str, list[float]] = field(default_factory=dict)
    # ledger operation -> calls that failed with LedgerUnavailable
    ledger_errors: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class BatchResult:
    """What the pipeline hands back to the engine for one batch.

    completed=True: every message's effects are done (ok, duplicate or to be dead-lettered).
    The engine must produce `dead_letters` and confirm them, then store the
    offsets of all messages of the batch.
    completed=False: the batch was cancelled (revoke/shutdown) and rolled back: the engine must
    store no offset of it; the events will be consumed again.
    `parked` (completed batches of a BatchWindow only): per partition, the first offset of an
    event whose effect was parked (its destination down past --park-after: neither done nor
    dead-lettered). The engine stores no offset past it and reads the partition again from
    there once the handler says so (`BatchWindow.rereads`; docs/engine.md, "Parked events").
    """

    completed: bool
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # what happened, for the observers (metrics, the exit summary, tests): the counts of the
    # attempt that completed; of a cancelled batch only its ledger timings
    stats: BatchStats = field(default_factory=BatchStats)
    parked: dict[TP, int] | None = None


class BatchWindow(Protocol):
    """Batches handled in the background, several at once, while the engine reads the next ones
    (worker.processing.batch_window: only when every processor is async and the ledger takes
    concurrent sessions). The engine submits batches in the order it read them and finishes
    them in that order; it stops reading while more than `max_events_in_flight` events are in
    unfinished batches or more than `max_pending` of the handler's work is not done."""

    max_pending: int
    max_events_in_flight: int

    def submit(self, messages: Sequence[Message], cancelled: Callable[[], bool]
               ) -> Future[BatchResult]: ...

    def pending(self) -> int:
        """Work handed over and not done yet (messages and effects)."""

    def rereads(self) -> Collection[TP]:
        """Partitions with parked events (BatchResult.parked) that may be read again now: a
        destination one of them waits for would let a call through (its circuit closed, or
        its backoff over). Asked only while the engine holds a partition; the engine reads
        each held one again from its first parked offset, at most once per hold."""

    def let_go(self, partitions: Collection[TP]) -> None:
        """Partitions revoked or lost (no batch of theirs in flight any more): forget what
        was parked of them."""


class BatchHandler(Protocol):
    """The processing half of the worker (worker.processing.pipeline.Pipeline); the engine is the
    Kafka half.

    `cancelled()` is polled between processor calls and during retry backoff; once it returns
    True the handler stops, rolls back, and returns BatchResult(completed=False).
    Raises worker.errors.FatalProcessingError when processing must stop (on_failure="stop").

    `window`: None, and the engine hands over one batch at a time (`handle`, in its handler
    thread); or the handler's BatchWindow, and batches overlap. The engine also sizes the
    consumer's fetches from it (worker.engine.consumer_port.ConsumerPort.open).
    """

    @property
    def window(self) -> BatchWindow | None: ...

    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult: ...
