"""What happens after a processor call raised: wait on its destination's circuit (the destination
is unavailable: `unavailable`), retry after a delay, dead-letter the event for this processor, or
stop the worker. One decision, used by the serial path (sync processors,
worker.processing.sync_calls) and the concurrent one (async processors,
worker.processing.effect_calls).

Anything a processor raises counts, BaseException subclasses too (SystemExit from a library, a
KeyboardInterrupt of its own): processors run in the engine's handler thread, where no signal
is delivered, so none of them is the operator's Ctrl-C.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.errors import FatalProcessingError, NonRetriableError, RetryLater, cut, describe
from worker.events import Event
from worker.processing.circuit import MAX_RETRY_AFTER_S
from worker.processors.api import Processor
from worker.types import Message
from worker.vocabulary import ErrorClass


def unavailable(exc: BaseException) -> float | None:
    """The destination is unavailable (not the event's fault): the seconds it asked to wait
    (0.0 when it did not say). None for any other failure.

    RetryLater (the HTTP forwarder raises it for 5xx, 408, 429, timeouts and connection errors),
    a timeout (an async call cancelled past its `timeout` too) and a connection error count;
    such a failure spends no retry attempt: the effect waits on its destination's circuit
    (worker.processing.circuit) instead, and is never a dead letter unless --max-outage is set."""
    if isinstance(exc, RetryLater):
        return exc.after
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return 0.0
    return None


def outage_reason(proc: Processor, seconds: float, exc: BaseException | None) -> str:
    """The reason of a `destination_unavailable` dead letter."""
    last = f"; last error: {describe(exc)}" if exc is not None else ""
    return cut(f"destination {proc.destination_name!r} unavailable for {seconds:.0f} s "
               f"(--max-outage){last}")


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Dead-letter the event for this processor."""

    error_class: str
    reason: str


def after_failure(proc: Processor, event: Event, msg: Message, exc: BaseException,
                  attempt: int) -> Retry | GiveUp:
    """Attempt `attempt` raised `exc` (not an `unavailable` one: those wait on the circuit).
    Raises FatalProcessingError when the processor's
    `on_failure='stop'` and its retries are used up."""
    if isinstance(exc, NonRetriableError):
        return GiveUp(exc.error_class, cut(str(exc)))
    if attempt < proc.retry.max_attempts:
        return Retry(proc.retry.delay(attempt))
    if proc.on_failure == "stop":
        raise FatalProcessingError(
            f"processor {proc.name!r} failed {attempt} times on event {event.id} "
            f"({msg.topic()}[{msg.partition()}]@{msg.offset()}): {describe(exc)}; "
            "on_failure='stop', so the worker stops here") from exc
    return GiveUp(ErrorClass.PROCESSOR_FAILED, describe(exc))


def outage_wait(proc: Processor, waits: int, retry_after: float) -> float:
    """After the `waits`-th unavailable failure of one call: how long it waits before asking
    its destination's circuit again (the processor's backoff, at least its Retry-After)."""
    return max(proc.retry.delay(waits), min(retry_after, MAX_RETRY_AFTER_S))
