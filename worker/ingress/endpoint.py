"""The webhook endpoint: one POSTed delivery in, one answer out, and the answer is 2xx only once
the broker acknowledged the record (docs/ingress.md).

- signature missing, malformed or wrong: 401, nothing stored, a metric, a log line at most
  every few seconds per kind;
- signed but not an event the worker can decode (not JSON, not an object, no envelope): stored
  in the dead-letter topic with the raw bytes and the error headers, answered 200 (a refusal
  would make Voucherify retry it for 24 h and then disable the webhook);
- signed and an event: stored unchanged in the topic, keyed by the customer, with headers for
  the webhook id, the event type, the time received and how the signature matched; 200;
- the broker did not store it within `store_timeout`: 503 with Retry-After, never a 2xx.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from worker import tracing
from worker.ingress import delivery, signature
from worker.ingress.metrics import IngressMetrics
from worker.ingress.signature import UNSIGNED, Signed
from worker.kafka.dead_letter_format import Header as LetterHeader
from worker.observability.http import Request, Response
from worker.vocabulary import IngressOutcome

log = structlog.get_logger(__name__)

_JSON = "application/json"
_PLAIN = "text/plain; charset=utf-8"

#: Stores one record: (topic, value, key, headers); returns once stored, raises if not.
Store = Callable[[str, bytes, bytes | None, Sequence[tuple[str, bytes]]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    topic: str
    dlq_topic: str
    secrets: tuple[bytes, ...]
    unsigned: bool = False        # loopback development only (checked by the command)
    store_timeout: float = 5.0    # well under Voucherify's 10 s
    retry_after: int = 30         # seconds, on a 503


class QuietLog:
    """One log line per kind at most every `every` seconds, with how many were not logged."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._next: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warning(self, kind: str, message: str, **fields: object) -> None:
        now = time.monotonic()
        if now < self._next.get(kind, 0.0):
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        self._next[kind] = now + self.every
        log.warning(message, kind=kind, not_logged_since=self._quiet.pop(kind, 0), **fields)


class WebhookEndpoint:
    def __init__(self, config: EndpointConfig, store: Store, metrics: IngressMetrics) -> None:
        self.config = config
        self._store = store
        self._metrics = metrics
        self._quiet = QuietLog()

    def _answer(self, outcome: IngressOutcome, status: int, body: bytes,
                content_type: str = _PLAIN,
                headers: tuple[tuple[str, str], ...] = ()) -> Response:
        self._metrics.outcome[outcome].inc()
        return Response(status, content_type, body, headers)

    def refused(self, status: int) -> None:
        """The server refused a request before it reached `handle` (413, 404, 405, 411, 400)."""
        outcome = IngressOutcome.TOO_LARGE if status == 413 else IngressOutcome.REFUSED
        self._metrics.outcome[outcome].inc()
        self._quiet.warning(f"refused_{status}", "webhook request refused", status=status)

    async def handle(self, req: Request) -> Response:
        m = self._metrics
        body = req.body
        m.body_bytes.inc(len(body))
        cfg = self.config
        if cfg.unsigned:
            matched = UNSIGNED
        else:
            signed = signature.check(body, req.headers.get(signature.HEADER), cfg.secrets)
            matched = str(signed)
            if signed not in (Signed.RAW, Signed.COMPACT):
                m.signed[matched].inc()
                self._quiet.warning(matched, "webhook refused: signature " + matched,
                                    peer_headers=len(req.headers), bytes=len(body))
                return self._answer(IngressOutcome.UNAUTHORIZED, 401,
                                    f"signature {matched}: sign the body with the project's "
                                    "secret key (x-voucherify-signature)\n".encode())
        m.signed[matched].inc()
        reading = delivery.read(body)
        received = datetime.now(UTC).isoformat(timespec="milliseconds").encode()
        if reading.error is None:
            topic, outcome = cfg.topic, IngressOutcome.STORED
            headers = [(delivery.Header.RECEIVED_AT, received),
                       (delivery.Header.SIGNED, matched.encode())]
            if reading.webhook_id:
                headers.append((delivery.Header.WEBHOOK_ID, reading.webhook_id.encode()))
            if reading.event_type:
                headers.append((delivery.Header.EVENT_TYPE, reading.event_type.encode()))
        else:
            error_class, reason = reading.error
            topic, outcome = cfg.dlq_topic, IngressOutcome.DEAD_LETTERED
            headers = [(LetterHeader.ERROR_CLASS, error_class.encode()),
                       (LetterHeader.ERROR_REASON, reason[:1000].encode("utf-8", "replace")),
                       (LetterHeader.PROCESSOR, b"ingress"),
                       (LetterHeader.SOURCE_TOPIC, cfg.topic.encode()),
                       (LetterHeader.SOURCE_PARTITION, b"-1"),
                       (LetterHeader.SOURCE_OFFSET, b"-1"),
                       (LetterHeader.ATTEMPTS, b"1"),
                       (LetterHeader.FAILED_AT, received),
                       (delivery.Header.RECEIVED_AT, received),
                       (delivery.Header.SIGNED, matched.encode())]
            self._quiet.warning("dead_letter", "signed delivery is not an event; "
                                "dead-lettered", error_class=error_class, reason=reason[:200])
        started = time.perf_counter()
        m.in_flight.inc()
        try:
            with tracing.publish_span(req.headers, topic, reading.key, reading.event_type,
                                      headers):
                async with asyncio.timeout(cfg.store_timeout + 1.0):
                    await self._store(topic, body, reading.key, headers)
        except Exception as exc:  # NotStored, the bound, a closed producer
            self._quiet.warning("unavailable", "delivery not stored; answered 503",
                                error=str(exc) or type(exc).__name__)
            return self._answer(IngressOutcome.UNAVAILABLE, 503,
                                b"the delivery could not be stored now; retry later\n",
                                headers=(("Retry-After", str(cfg.retry_after)),))
        finally:
            m.in_flight.dec()
        m.store_seconds.observe(time.perf_counter() - started)
        return self._answer(outcome, 200, json.dumps(
            {"stored": outcome == IngressOutcome.STORED, "topic": topic}).encode(), _JSON)
