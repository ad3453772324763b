"""The processor API: the `@processor` decorator, `Processor` and the per-call `Context`.

A processor is a function `(event, ctx) -> None`, or an `async def` one, with a pattern over
event types. It is its own unit of idempotency and failure: its key decides what counts as "the
same effect", and its retry policy decides what happens when it raises. Async processors run
concurrently, ordered per key (worker.processing.effects); sync ones one after another, inside the
batch's
ledger transaction.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import structlog

from worker.events import Event
from worker.outputs import OutputRecord
from worker.processors.keys import custom_key, event_key, group_key
from worker.types import Headers

ProcessorFunc = Callable[[Event, "Context"], None] | Callable[[Event, "Context"], Awaitable[None]]
KeyFunc = Callable[[Event], str]
# An async processor's ordering key (effects of one key run one at a time, in offset order);
# by default the Kafka message key, else the partition.
OrderFunc = Callable[[Event], Hashable]
DEFAULT_CALL_TIMEOUT_S = 30.0
# Creates the processor's read-model tables. The app runs it once at startup, on the SQL
# ledger's DB-API connection (sqlite3 or psycopg), inside a transaction it then commits.
SetupFunc = Callable[[Any], None]
OncePer = Literal["event", "group"]
OnFailure = Literal["dead_letter", "stop"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff for a processor that raises: attempt n waits
    min(initial * multiplier**(n-1), maximum) seconds before attempt n+1."""

    max_attempts: int = 3
    initial_backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 5.0

    def delay(self, attempt: int) -> float:
        return float(min(self.initial_backoff * self.multiplier ** (attempt - 1), self.max_backoff))


@dataclass(frozen=True, slots=True)
class Processor:
    name: str
    patterns: tuple[str, ...]
    func: ProcessorFunc
    once_per: OncePer = "event"
    key: KeyFunc | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_failure: OnFailure = "dead_letter"
    settings: Mapping[str, Any] = field(default_factory=dict)
    module: str = ""
    setup: SetupFunc | None = None
    # True when the processor writes through ctx.transaction, so it can only run with a SQL
    # ledger (sqlite, postgresql); the app refuses to start it on another ledger.
    requires_transaction: bool = False
    description: str = ""
    # Async processors only: the ordering key (see OrderFunc) and the most calls of this
    # processor in flight at once (e.g. an external API's concurrency limit; None: only the
    # worker's --max-in-flight bounds it).
    order_by: OrderFunc | None = None
    max_concurrency: int | None = None
    # Async processors only: a call running longer is cancelled and counts as a failure
    # (retried, then dead-lettered). Sync calls cannot be cancelled: processor_call_age_seconds
    # and the ActivityWorkerProcessorStalled alert show them past the same 30 s.
    timeout: float | None = DEFAULT_CALL_TIMEOUT_S
    # The system its calls reach, for the circuit breaker (worker.processing.circuit): processors
    # that
    # name the same destination share one circuit. None: its own (named after the processor).
    destination: str | None = None

    def __post_init__(self) -> None:
        if self.is_async and self.requires_transaction:
            raise ValueError(f"processor {self.name!r}: an async processor cannot write through "
                             "ctx.transaction (requires_transaction=True); make it a plain def, "
                             "which runs inside the batch's transaction")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"processor {self.name!r}: max_concurrency must be at least 1")

    @property
    def destination_name(self) -> str:
        return self.destination or self.name

    @property
    def is_async(self) -> bool:
        func = self.func  # an `async def`, or an object with an `async def __call__`
        return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            type(func).__call__)

    def idempotency_key(self, event: Event) -> str:
        """processor + group_id + event id by default (see `worker.processors.keys`)."""
        if self.key is not None:
            return custom_key(self.name, self.key(event))
        if self.once_per == "group":
            return group_key(self.name, event)
        return event_key(self.name, event)

    @property
    def key_scope(self) -> str:
        return "custom" if self.key is not None else self.once_per


class Context:
    """What a processor gets besides the event. Built per call, so kept small and lazy: the
    pipeline builds it with `Context.of_message`, and topic, partition and offset are read
    from the message only when the processor asks for them."""

    __slots__ = ("_emitted", "_log", "_msg", "_offset", "_partition", "_topic", "attempt",
                 "event", "processor", "transaction")

    def __init__(self, processor: Processor, event: Event, topic: str, partition: int,
                 offset: int, transaction: Any | None, attempt: int = 1) -> None:
        self.processor = processor
        self.event = event
        self._msg: Any = None
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self.transaction = transaction
        self.attempt = attempt
        self._log: Any = None
        self._emitted: list[OutputRecord] | None = None

    @classmethod
    def of_message(cls, processor: Processor, event: Event, msg: Any,
                   transaction: Any | None, attempt: int = 1) -> Context:
        """The pipeline's constructor (`msg` is a worker.types.Message): ~0.12 us instead of
        ~0.28 us, as it calls none of the message's methods up front."""
        ctx = cls.__new__(cls)
        ctx.processor = processor
        ctx.event = event
        ctx._msg = msg
        ctx.transaction = transaction
        ctx.attempt = attempt
        ctx._log = None
        ctx._emitted = None
        return ctx

    @property
    def topic(self) -> str:
        msg = self._msg
        return self._topic if msg is None else (msg.topic() or "")

    @property
    def partition(self) -> int:
        msg = self._msg
        return self._partition if msg is None else (msg.partition() or 0)

    @property
    def offset(self) -> int:
        msg = self._msg
        return self._offset if msg is None else (msg.offset() or 0)

    @property
    def value(self) -> bytes:
        """The event's original bytes, as consumed (b"" when the context has no message)."""
        msg = self._msg
        return b"" if msg is None else (msg.value() or b"")

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The consumed record's headers (empty when the context has no message)."""
        msg = self._msg
        return [] if msg is None else list(msg.headers() or [])

    @property
    def message_key(self) -> bytes | None:
        """The consumed record's Kafka key (producers key customer activity by customer)."""
        msg = self._msg
        return None if msg is None else msg.key()

    @property
    def key(self) -> str:
        """This effect's idempotency key, as the ledger stores it (e.g. for an
        Idempotency-Key header, so a receiver can drop the rare repeat after a crash)."""
        return self.processor.idempotency_key(self.event)

    @property
    def settings(self) -> Mapping[str, Any]:
        return self.processor.settings

    def emit(self, topic: str, value: bytes, *, key: bytes | str | None = None,
             headers: Headers | None = None) -> None:
        """Emit a record to `topic` as part of this effect (`key` as bytes, or str encoded as
        UTF-8). The records are produced only if the call returns without raising (a failed
        attempt's records are dropped; its retry emits afresh), and the effect is marked done
        only once they are acknowledged (docs/processors.md, "Emitting records")."""
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"ctx.emit: value must be bytes, not {type(value).__name__} "
                            "(use ctx.emit_struct for a msgspec struct)")
        if isinstance(key, str):
            key = key.encode()
        record = OutputRecord(topic, bytes(value), key, headers)
        if self._emitted is None:
            self._emitted = [record]
        else:
            self._emitted.append(record)

    def emit_struct(self, topic: str, value: Any, *, key: bytes | str | None = None,
                    headers: Headers | None = None) -> None:
        """`emit` a msgspec struct (or any value msgspec encodes) as JSON."""
        self.emit(topic, _encode_json(value), key=key, headers=headers)

    @property
    def emitted(self) -> list[OutputRecord]:
        """The records this call emitted so far."""
        return list(self._emitted or ())

    @property
    def log(self) -> Any:
        """A structlog logger bound to this event (made on first use: binding costs µs)."""
        if self._log is None:
            self._log = structlog.get_logger(__name__).bind(
                processor=self.processor.name, event_id=self.event.id,
                event_type=self.event.type, group_id=self.event.group_id,
                topic=self.topic, partition=self.partition, offset=self.offset)
        return self._log


_encode_json = msgspec.json.Encoder().encode

_REGISTERED: list[Processor] = []


def processor(*patterns: str, name: str | None = None, once_per: OncePer = "event",
              key: KeyFunc | None = None, retry: RetryPolicy | None = None,
              on_failure: OnFailure = "dead_letter",
              settings: Mapping[str, Any] | None = None,
              setup: SetupFunc | None = None, requires_transaction: bool = False,
              order_by: OrderFunc | None = None, max_concurrency: int | None = None,
              timeout: float | None = DEFAULT_CALL_TIMEOUT_S,
              destination: str | None = None,
              ) -> Callable[[ProcessorFunc], ProcessorFunc]:
    """Register `func` as a processor for events whose type matches any of `patterns`.

    `func` may be `async def`: then it runs concurrently with other keys' effects (ordered per
    `order_by`, default the Kafka message key; at most `max_concurrency` calls at once).
    `destination` names the system its calls reach: processors naming the same one share a
    circuit breaker (worker.processing.circuit); by default each processor has its own.
    The first line of `func`'s docstring is its description in `activity-worker processors`.
    """
    if not patterns:
        raise ValueError("@processor needs at least one pattern")

    def register(func: ProcessorFunc) -> ProcessorFunc:
        _REGISTERED.append(Processor(
            name=name or func.__name__, patterns=tuple(patterns), func=func, once_per=once_per,
            key=key, retry=retry or RetryPolicy(), on_failure=on_failure,
            settings=dict(settings or {}), module=func.__module__, setup=setup,
            requires_transaction=requires_transaction,
            description=(func.__doc__ or "").strip().split("\n")[0], order_by=order_by,
            max_concurrency=max_concurrency, timeout=timeout, destination=destination))
        return func

    return register


def registered() -> list[Processor]:
    """Every processor registered so far by importing modules, in registration order."""
    return list(_REGISTERED)
