"""Named failure types. They steer control flow, so each says what the engine does with it."""

from __future__ import annotations


class WorkerError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(WorkerError):
    """Settings that cannot work or would break delivery guarantees. The worker refuses to start."""


class NonRetriableError(WorkerError):
    """The event itself is bad: retrying cannot help. The engine dead-letters it at once."""

    error_class = "non_retriable"


class EventDecodeError(NonRetriableError):
    """Bytes that are not a valid event.

    `error_class` is one of: "undecodable" (not UTF-8), "invalid_json", "not_an_object",
    "schema" (a field missing or of the wrong type), and `reason` names the JSON path,
    e.g. "$.data.loyalty_tier_to.points.from: expected int, got str".
    """

    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason


class LedgerUnavailable(WorkerError):
    """The idempotency store cannot be reached. The engine backs off and retries; it
    never skips the events or commits past them."""


class FatalProcessingError(WorkerError):
    """Processing must stop: the worker commits what finished and exits non-zero
    (e.g. retries exhausted with on_failure="stop", or the DLQ guardrail tripped)."""
