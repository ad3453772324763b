"""What happens after a processor call raised: retry after a delay, dead-letter the event for
this processor, or stop the worker. One decision, used by the serial path (sync processors,
worker.pipeline) and the concurrent one (async processors, worker.effects).

Anything a processor raises counts, BaseException subclasses too (SystemExit from a library, a
KeyboardInterrupt of its own): processors run in the engine's handler thread, where no signal
is delivered, so none of them is the operator's Ctrl-C.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.errors import FatalProcessingError, NonRetriableError, RetryLater, cut, describe
from worker.events import Event
from worker.processors.api import Processor
from worker.types import Message
from worker.vocabulary import ErrorClass

MAX_RETRY_AFTER_S = 300.0  # the longest wait a RetryLater (Retry-After) may ask for


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
    """Attempt `attempt` raised `exc`. Raises FatalProcessingError when the processor's
    `on_failure='stop'` and its retries are used up."""
    if isinstance(exc, NonRetriableError):
        return GiveUp(exc.error_class, cut(str(exc)))
    if attempt < proc.retry.max_attempts:
        delay = proc.retry.delay(attempt)
        if isinstance(exc, RetryLater):  # the other side said when (bounded: a bad header)
            delay = max(delay, min(exc.after, MAX_RETRY_AFTER_S))
        return Retry(delay)
    if proc.on_failure == "stop":
        raise FatalProcessingError(
            f"processor {proc.name!r} failed {attempt} times on event {event.id} "
            f"({msg.topic()}[{msg.partition()}]@{msg.offset()}): {describe(exc)}; "
            "on_failure='stop', so the worker stops here") from exc
    return GiveUp(ErrorClass.PROCESSOR_FAILED, describe(exc))
