"""The dead-letter producer: writes the original record plus `worker.*` headers saying why, and
returns only once every write is acknowledged by the broker (the engine stores no offset past a
dead letter before that)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from worker.errors import WorkerError
from worker.types import DeadLetter


class DeadLetterError(WorkerError):
    """A dead letter could not be written; the engine must not commit past its event."""


HEADER_PREFIX = "worker."


def dlq_headers(letter: DeadLetter, failed_at: str) -> list[tuple[str, str | bytes | None]]:
    src = letter.source
    headers: list[tuple[str, str | bytes | None]] = list(src.headers() or [])
    headers += [
        ("worker.error.class", letter.error_class.encode()),
        ("worker.error.reason", letter.reason.encode("utf-8", "replace")),
        ("worker.processor", (letter.processor or "").encode()),
        ("worker.source.topic", (src.topic() or "").encode()),
        ("worker.source.partition", str(src.partition()).encode()),
        ("worker.source.offset", str(src.offset()).encode()),
        ("worker.attempts", str(letter.attempts).encode()),
        ("worker.failed_at", failed_at.encode()),
    ]
    headers += letter.extra_headers
    return headers


def default_dlq_topic(source_topic: str) -> str:
    return f"{source_topic}.dlq"


class DeadLetterProducer:
    """`send(letters)` produces every letter and blocks until all are acknowledged, raising
    DeadLetterError if any failed or the timeout passed. Idempotent producer, acks=all."""

    def __init__(self, config: Mapping[str, Any], topic: str | Callable[[str], str] | None = None,
                 *, timeout: float = 30.0) -> None:
        from confluent_kafka import KafkaException, Producer

        from worker.kafka.consumer import settings_refused
        from worker.kafka.rdkafka_log import LibrdkafkaLogger

        try:
            self._producer = Producer(dict(config), logger=LibrdkafkaLogger(config))
        except (KafkaException, ValueError, TypeError) as exc:
            raise settings_refused(exc, config, "DLQ producer") from None
        if topic is None:
            self._topic_for: Callable[[str], str] = default_dlq_topic
        elif isinstance(topic, str):
            fixed = topic
            self._topic_for = lambda _source: fixed
        else:
            self._topic_for = topic
        self._timeout = timeout
        self.sent = 0

    def topic_for(self, source_topic: str) -> str:
        return self._topic_for(source_topic)

    def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        failures: list[str] = []
        acked = 0

        def on_delivery(err: Any, msg: Any) -> None:
            nonlocal acked
            if err is not None:
                failures.append(f"{msg.topic()}: {err}")
            else:
                acked += 1

        failed_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        deadline = time.monotonic() + self._timeout
        for letter in letters:
            src = letter.source
            while True:
                try:
                    self._producer.produce(
                        self._topic_for(src.topic() or ""), value=src.value(), key=src.key(),
                        headers=dlq_headers(letter, failed_at), on_delivery=on_delivery)
                    break
                except BufferError:
                    # Local queue full: serve delivery reports, then try again.
                    if time.monotonic() > deadline:
                        raise DeadLetterError("the DLQ producer queue stayed full; check that "
                                              "the broker is reachable") from None
                    self._producer.poll(0.1)
        left = max(0.0, deadline - time.monotonic())
        remaining = self._producer.flush(left)
        if failures:
            raise DeadLetterError(
                f"{len(failures)} dead letter(s) were not written ({failures[0]}); create the "
                "DLQ topic or fix the producer settings, then restart")
        if remaining or acked != len(letters):
            raise DeadLetterError(
                f"{len(letters) - acked} dead letter(s) were not acknowledged within "
                f"{self._timeout:.0f}s; check the broker, then restart")
        self.sent += acked

    def serve(self) -> None:
        """Serve the producer's queued callbacks (its librdkafka log lines) without waiting:
        the engine calls this between batches, so an idle DLQ producer's queue cannot grow."""
        self._producer.poll(0)

    def close(self, timeout: float = 5.0) -> None:
        self._producer.flush(timeout)
