"""The dead-letter producer: writes the original record plus `worker.*` headers saying why, and
returns only once every write is acknowledged by the broker (the engine stores no offset past a
dead letter before that)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from worker import tracing
from worker.engine.dead_letter_sink import DeadLetterError
from worker.kafka.dead_letter_format import HeaderList, full_letter, record_size, shrunk_letter
from worker.types import DeadLetter

#: librdkafka's default `message.max.bytes`: the most a record may be unless the DLQ topic's
#: `max.message.bytes` is known (the app reads it at start-up and passes it as `max_bytes`).
DEFAULT_MAX_BYTES = 1_000_000


def dlq_headers(letter: DeadLetter, failed_at: str) -> HeaderList:
    """The headers of a full letter: the original record's, then the worker's."""
    return full_letter(letter, failed_at)[2]


def default_dlq_topic(source_topic: str) -> str:
    return f"{source_topic}.dlq"


class DeadLetterProducer:
    """The engine's dead-letter sink (worker.engine.dead_letter_sink) over Kafka.

    `send(letters)` produces every letter and blocks until all are acknowledged, raising
    DeadLetterError if any failed or the timeout passed; `submit(letters)` produces them and
    returns at once (the engine goes on with later batches while a DLQ partition's leader
    moves, worker.engine.finishing). Idempotent producer, acks=all.

    A letter that would not fit (`max_bytes`: the DLQ topic's `max.message.bytes`, which also
    becomes the producer's `message.max.bytes`) is written shrunk instead (see
    `worker.kafka.dead_letter_format`), and so is one the broker refuses as too large: a dead
    letter always fits, and its reference to the original is never lost.

    In exactly-once mode (`client`: the transactional producer's client, worker.kafka.
    transactions) the letters are written inside the transaction the engine has open for their
    batch: acknowledged here, visible to read_committed readers (`dlq replay`, a dead-letter
    consumer) only once it commits, and gone with it when it aborts, so a batch read again
    after an abort leaves one dead letter per event, not two."""

    def __init__(self, config: Mapping[str, Any], topic: str | Callable[[str], str] | None = None,
                 *, timeout: float = 30.0, max_bytes: int | None = None,
                 client: Callable[[], Any] | None = None) -> None:
        from worker.kafka.clients import new_producer

        conf = dict(config)
        if max_bytes is not None:
            conf["message.max.bytes"] = max(1000, min(max_bytes, 1_000_000_000))
        if client is not None:  # (the transactional producer keeps its own message.max.bytes)
            conf["message.max.bytes"] = min(int(conf.get("message.max.bytes",
                                                          DEFAULT_MAX_BYTES)), DEFAULT_MAX_BYTES)
        self.max_bytes = int(conf.get("message.max.bytes", DEFAULT_MAX_BYTES))
        self.shrunk = 0
        self._own = client is None
        own = new_producer(conf, "DLQ producer") if client is None else None
        self._client: Callable[[], Any] = client if client is not None else (lambda: own)
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
        if letters:
            self.submit(letters).wait(self._timeout + 1.0)

    def submit(self, letters: Sequence[DeadLetter]) -> Delivery:
        """Produce every letter now; the returned delivery says when all are acknowledged."""
        if tracing.active():  # a span per letter, its context in the letter's headers
            tracing.dead_letter_spans(letters, self._topic_for)
        return Delivery(self, letters)

    def _produce(self, producer: Any, letter: DeadLetter, failed_at: str, budget: int,
                 on_delivery: Callable[[Any, Any], None], deadline: float) -> None:
        from confluent_kafka import KafkaError, KafkaException

        topic = self._topic_for(letter.source.topic() or "")
        key, value, headers = full_letter(letter, failed_at)
        if budget < self.max_bytes or record_size(key, value, headers) > budget:
            key, value, headers = shrunk_letter(letter, failed_at, budget)
            self.shrunk += 1
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers,
                                 on_delivery=on_delivery)
                return
            except BufferError:
                # Local queue full: serve delivery reports, then try again.
                if time.monotonic() > deadline:
                    raise DeadLetterError("the DLQ producer queue stayed full; check that "
                                          "the broker is reachable") from None
                producer.poll(0.1)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if getattr(err, "code", lambda: None)() != KafkaError.MSG_SIZE_TOO_LARGE:
                    raise DeadLetterError(f"a dead letter could not be queued: {exc}") from None
                budget //= 4  # our estimate was below librdkafka's count: shrink further
                key, value, headers = shrunk_letter(letter, failed_at, budget)
                self.shrunk += 1

    def serve(self) -> None:
        """Serve the producer's queued callbacks (its librdkafka log lines) without waiting:
        the engine calls this between batches, so an idle DLQ producer's queue cannot grow
        (a shared client is served by its owner)."""
        if self._own:
            self._client().poll(0)

    def close(self, timeout: float = 5.0) -> None:
        if self._own:  # (a shared client is flushed and closed by its owner)
            self._client().flush(timeout)


class Delivery:
    """A DeadLetterProducer's letters on their way (worker.engine.dead_letter_sink's
    DeadLetterDelivery). A letter the broker refuses as too large is produced again shrunk, to
    1/4 and then 1/16 of the limit; each letter is acknowledged once."""

    def __init__(self, sink: DeadLetterProducer, letters: Sequence[DeadLetter]) -> None:
        self._sink = sink
        self._letters = letters
        self._producer = sink._client()
        self._failed_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z")
        self._deadline = time.monotonic() + sink._timeout
        self._budget = sink.max_bytes
        self._rounds = 0
        # (lists: a shared client's reports may come on its own thread)
        self._acked: list[int] = []
        self._failures: list[str] = []
        self._too_large: list[int] = []
        self._produced = 0
        self._result: bool | None = None
        self._produce(range(len(letters)))

    def _produce(self, todo: Iterable[int]) -> None:
        for i in todo:
            self._sink._produce(self._producer, self._letters[i], self._failed_at, self._budget,
                                self._report(i), self._deadline)
            self._produced += 1

    def _report(self, i: int) -> Callable[[Any, Any], None]:
        from confluent_kafka import KafkaError

        def report(err: Any, msg: Any) -> None:
            if err is None:
                self._acked.append(i)
            elif err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                self._too_large.append(i)  # the broker's limit is lower than we knew: shrink
            else:
                self._failures.append(f"{msg.topic()}: {err}")
        return report

    def done(self) -> bool:
        if self._result is None:
            self._sink.serve()
            self._result = self._outcome()
        return self._result is True

    def wait(self, timeout: float) -> bool:
        until = time.monotonic() + timeout
        while not self.done():
            left = min(until, self._deadline) - time.monotonic()
            if left <= 0:
                return self.done()
            # A shared client's reports may be served by its own delivery thread: flush()
            # returns once they are taken, maybe before they ran.
            if self._producer.flush(min(left, 0.1)) == 0:
                time.sleep(0.001)
        return True

    def _outcome(self) -> bool | None:
        """None while letters are on their way; True once all are acknowledged."""
        reported = len(self._acked) + len(self._failures) + len(self._too_large)
        if reported < self._produced:
            if time.monotonic() < self._deadline:
                return None
            raise DeadLetterError(
                f"{len(self._letters) - len(self._acked)} dead letter(s) were not acknowledged "
                f"within {self._sink._timeout:.0f}s; check the broker")
        if self._too_large and not self._failures and self._rounds < 3:
            todo, self._too_large = self._too_large, []
            self._produced -= len(todo)  # (reported, and produced again smaller)
            self._budget //= 4
            self._rounds += 1
            self._produce(todo)
            return None
        if self._failures or self._too_large:
            first = self._failures[0] if self._failures else "still too large after shrinking"
            raise DeadLetterError(
                f"{len(self._failures) + len(self._too_large)} dead letter(s) were not written "
                f"({first}); create the DLQ topic or fix the producer settings")
        self._sink.sent += len(self._acked)
        return True
