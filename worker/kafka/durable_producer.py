"""A producer whose every `send` is answered only by the broker: an asyncio future that resolves
once the delivery report says the record is stored (`acks=all`, idempotence on), and fails when
it is not within the bound. The webhook ingress (worker.ingress) answers 2xx on that, never
before.

librdkafka's delivery reports are served by `poll()`, here on a thread of its own; the reports
of one `poll()` are handed to the waiting coroutines' loop together, with one
`call_soon_threadsafe` (one wake-up of the loop, not one per record). `message.timeout.ms` is
the send bound, so a record that could not be stored in time is failed by librdkafka itself
rather than delivered after its sender was told it was not. A background check reads the
topic's metadata every few seconds: `ready` is true while a broker answers and the topic and
its partitions are there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException

from worker.kafka.clients import new_producer, without_consumer_settings

log = structlog.get_logger(__name__)

Headers = Sequence[tuple[str, bytes]]
READY_CHECK_S = 2.0


class NotStored(Exception):
    """The broker did not store the record within the bound (or the local queue is full)."""


class DurableProducer:
    def __init__(self, config: Mapping[str, Any], topic: str, *, send_timeout: float,
                 on_ready_change: Callable[[bool, str], None] | None = None) -> None:
        conf = without_consumer_settings(config)
        conf.update({"acks": "all", "enable.idempotence": True,
                     "message.timeout.ms": max(1, int(send_timeout * 1000)),
                     "linger.ms": conf.get("linger.ms", 2)})
        self.topic = topic
        self._p = new_producer(conf, "ingress producer")
        self._stop = threading.Event()
        self._reports: list[tuple[asyncio.Future[None], Any]] = []  # of the current poll()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_ready_change = on_ready_change
        self.ready = False
        self.not_ready_reason = "not checked yet"
        self._poller = threading.Thread(target=self._poll, name="ingress-delivery",
                                        daemon=True)
        self._checker = threading.Thread(target=self._check, name="ingress-ready", daemon=True)
        self._poller.start()
        self._checker.start()

    async def send(self, topic: str, value: bytes, key: bytes | None,
                   headers: Headers) -> None:
        """Return once the record is stored; NotStored when it is not."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        try:  # (the report comes on the delivery thread, inside its poll())
            self._p.produce(topic, value=value, key=key, headers=list(headers),
                            on_delivery=lambda err, _msg: self._reports.append((done, err)))
        except BufferError:
            raise NotStored("the producer's local queue is full") from None
        except KafkaException as exc:
            raise NotStored(str(exc)) from None
        await done

    # -- threads -------------------------------------------------------------------------------
    def _poll(self) -> None:
        while not self._stop.is_set():
            self._p.poll(0.05)  # delivery callbacks run here, appending to _reports
            if self._reports:
                reports, self._reports = self._reports, []
                assert self._loop is not None
                self._loop.call_soon_threadsafe(_settle_all, reports)

    def _check(self) -> None:
        while not self._stop.is_set():
            ready, reason = self._probe()
            if ready != self.ready or (not ready and reason != self.not_ready_reason):
                self.ready, self.not_ready_reason = ready, reason
                if self._on_ready_change is not None:
                    self._on_ready_change(ready, reason)
            self._stop.wait(READY_CHECK_S)

    def _probe(self) -> tuple[bool, str]:
        try:
            md = self._p.list_topics(self.topic, timeout=READY_CHECK_S)
        except KafkaException as exc:
            return False, f"no broker answers: {exc}"
        topic = md.topics.get(self.topic)
        if topic is None or topic.error is not None:
            return False, f"topic {self.topic!r} is missing ({getattr(topic, 'error', None)})"
        if not topic.partitions or any(p.leader < 0 for p in topic.partitions.values()):
            return False, f"topic {self.topic!r} has partitions without a leader"
        return True, ""

    def close(self, timeout: float = 10.0) -> int:
        """Stop, then wait for what is in flight (up to `timeout`); returns what is left. (The
        server is closed first: nobody waits for these reports any more.)"""
        self._stop.set()
        self._poller.join(2)
        left = int(self._p.flush(timeout))
        self._checker.join(READY_CHECK_S + 1)
        return left


def _settle_all(reports: list[tuple[asyncio.Future[None], Any]]) -> None:
    for done, err in reports:
        if done.done():
            continue
        if err is None:
            done.set_result(None)
        else:
            code = err.code() if isinstance(err, KafkaError) else None
            done.set_exception(NotStored(
                "not stored within the bound" if code == KafkaError._MSG_TIMED_OUT
                else str(err)))
