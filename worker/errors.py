"""Named failure types. They steer control flow, so each says what the engine does with it."""

from __future__ import annotations

from worker.vocabulary import ErrorClass

#: How much of an error reason or exception text goes into a dead letter's header or a log line
#: (characters). An HTTP client that puts a response body into its exception must not make a
#: dead letter too large to write, nor a log line of megabytes.
MAX_REASON_CHARS = 1000


def cut(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text`, or its first `limit` characters marked as cut ("... [cut: N characters]")."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [cut: {len(text)} characters]"


def describe(exc: BaseException) -> str:
    """"Type: message", bounded by `cut`."""
    try:
        text = str(exc)
    except Exception:  # a hostile __str__
        text = "(str() of the exception failed)"
    return cut(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


class WorkerError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(WorkerError):
    """Settings that cannot work or would break delivery guarantees. The worker refuses to start."""


class NonRetriableError(WorkerError):
    """The event itself is bad: retrying cannot help. The engine dead-letters it at once."""

    error_class: str = ErrorClass.NON_RETRIABLE


class RetryLater(WorkerError):
    """Retry, but not before `after` seconds (e.g. an HTTP 429 or 503 with Retry-After): the
    processor's retry policy still counts the attempt and keeps its own delay if longer."""

    def __init__(self, message: str, after: float) -> None:
        super().__init__(message)
        self.after = max(0.0, after)


class EventDecodeError(NonRetriableError):
    """Bytes that are not a valid event.

    `error_class` is one of `ErrorClass.UNDECODABLE` (not UTF-8), `INVALID_JSON`,
    `NOT_AN_OBJECT`, `SCHEMA` (a field missing or of the wrong type), and `reason` names the
    JSON path,
    e.g. "$.data.loyalty_tier_to.points.from: expected int, got str".
    """

    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason


class LedgerUnavailable(WorkerError):
    """The idempotency store cannot be reached. The engine backs off and retries; it
    never skips the events or commits past them."""


class LedgerKeyRejected(WorkerError):
    """The store refused a statement because of the data of a key (PostgreSQL SQLSTATE classes
    22 "data exception" and 54 "program limit exceeded"), not because it is down. The pipeline
    finds the refused keys, dead-letters those (event, processor) pairs and goes on with the
    rest of the batch: one event must not stall every partition."""


class FatalProcessingError(WorkerError):
    """Processing must stop: the worker commits what finished and exits non-zero
    (e.g. retries exhausted with on_failure="stop", or the DLQ guardrail tripped)."""
