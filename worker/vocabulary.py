"""The words the worker counts and dead-letters with, defined once. The pipeline, the metrics,
the dead-letter headers, the docs and the dashboard use these; a test fails when the docs or the
dashboard drift from them (tests/unit/test_vocabulary.py).

Members are `StrEnum`s, so they are their strings on the wire, in metric labels and as dict
keys: `ErrorClass.SCHEMA == "schema"`.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What happened to one (event, processor) pair; the `outcome` label of
    `processor_outcomes_total`. An event that no processor matches has no processor outcome:
    it is counted by `unmatched_events_total` (and dead-lettered with `--unmatched
    dead_letter`)."""

    OK = "ok"
    DUPLICATE = "duplicate"          # the ledger says the effect already happened
    RETRIED = "retried"              # one count per failed attempt that was retried
    DEAD_LETTERED = "dead_lettered"  # for this processor only


class ErrorClass(StrEnum):
    """Why an event went to the dead-letter topic: the `worker.error.class` header and the
    `reason` label of `dead_letters_total`."""

    # the bytes are not a valid event (worker.events.envelope)
    UNDECODABLE = "undecodable"        # no value (tombstone), not UTF-8
    INVALID_JSON = "invalid_json"      # malformed, truncated, too deep
    NOT_AN_OBJECT = "not_an_object"    # an array, string, number, bool or null
    SCHEMA = "schema"                  # a field missing, too long or of the wrong type
    # one processor could not handle it (the others ran)
    PROCESSOR_FAILED = "processor_failed"  # retries exhausted
    NON_RETRIABLE = "non_retriable"        # the processor raised NonRetriableError
    KEY_FAILED = "key_failed"              # its custom key function raised
    LEDGER_REJECTED = "ledger_rejected"    # the ledger's store refused its key's data
    # its destination stayed unavailable longer than --max-outage (not the event's fault:
    # replay it with `dlq replay --error-class destination_unavailable` once it is back)
    DESTINATION_UNAVAILABLE = "destination_unavailable"
    # no processor matched it, with --unmatched dead_letter
    UNMATCHED = "unmatched"


class IngressOutcome(StrEnum):
    """What the webhook ingress answered one request with; the `outcome` label of
    `ingress_requests_total` (docs/ingress.md)."""

    STORED = "stored"                # 200: the delivery is in the topic
    DEAD_LETTERED = "dead_lettered"  # 200: signed but not an event; in the dead-letter topic
    UNAVAILABLE = "unavailable"      # 503: the broker did not store it within the bound
    UNAUTHORIZED = "unauthorized"    # 401: the signature is missing or wrong
    TOO_LARGE = "too_large"          # 413: over --max-body
    REFUSED = "refused"              # 404, 405, 411, 400: not a delivery to this endpoint


class CircuitState(StrEnum):
    """The state of a destination's circuit (worker.processing.circuit); the `state` label of
    `destination_state`."""

    CLOSED = "closed"        # calls go through
    OPEN = "open"            # the destination is unavailable: no calls until the backoff ends
    HALF_OPEN = "half_open"  # a few probe calls; a success closes it, a failure opens it again


#: Error classes that say nothing about the event: the DLQ guardrail does not count them.
NOT_THE_EVENTS_FAULT = frozenset({ErrorClass.DESTINATION_UNAVAILABLE})


class EffectWait(StrEnum):
    """What an async effect that has not started its call waits for (the `reason` of
    `effects_waiting`): which one holds the effects back says what would help."""

    KEY_ORDER = "key_order"      # an earlier effect of its ordering key: more distinct keys
    SLOT = "slot"                # a slot of --max-in-flight: more in flight (or replicas)
    DESTINATION = "destination"  # its destination's circuit, pace or adaptive limit: the
    #                              destination is the limit; more workers would not help


class ProcessingGuarantee(StrEnum):
    """`--processing-guarantee`: what a crash may do to emitted records and offsets."""

    AT_LEAST_ONCE = "at-least-once"  # the default: a crash may repeat, never lose
    EXACTLY_ONCE = "exactly-once"    # each batch's records and offsets in one Kafka transaction
