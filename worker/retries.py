"""What happens after a processor call raised: retry after a delay, dead-letter the event for
this processor, or stop the worker. One decision, used by the serial path (sync processors,
worker.pipeline) and the concurrent one (async processors, worker.effects).

Anything a processor raises counts, BaseException subclasses too (SystemExit from a library, a
KeyboardInterrupt of its own): processors run in the engine's handler thread, where no signal
is delivered, so none of them is the operator's Ctrl-C.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from worker.errors import FatalProcessingError, NonRetriableError, RetryLater, cut, describe
from worker.events import Event
from worker.processors.api import Processor
from worker.types import BatchStats, DeadLetter, Message
from worker.vocabulary import ErrorClass, Outcome

log = structlog.get_logger("worker.pipeline")

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


def dead_letter(msg: Message, proc: Processor, error_class: str, reason: str, attempts: int,
                stats: BatchStats, dead: list[DeadLetter]) -> None:
    """Count and keep the dead letter of one (event, processor)."""
    stats.outcomes[(proc.name, Outcome.DEAD_LETTERED)] += 1
    stats.dead_letters[error_class] += 1
    dead.append(DeadLetter(msg, error_class, reason, proc.name, attempts))


def gave_up(msg: Message, event: Event, proc: Processor, decision: GiveUp,
            error: BaseException, attempts: int, stats: BatchStats,
            dead: list[DeadLetter]) -> None:
    """The processor's retries ended in a dead letter: keep it, and say so in one log line
    (not for a NonRetriableError, whose event was refused on purpose)."""
    dead_letter(msg, proc, decision.error_class, decision.reason, attempts, stats, dead)
    if not isinstance(error, NonRetriableError):
        log.error("processor failed; event dead-lettered", processor=proc.name,
                  event_id=event.id, event_type=event.type, group_id=event.group_id,
                  topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
                  attempts=attempts, error=decision.reason)
