"""The output sink (worker.outputs.OutputSink) over Kafka: records that processors emit, produced
by an idempotent producer with acks=all (one partition's records are stored in the order they
were produced, retries included), each delivery report counted in its batch's `Deliveries`.

The producer is made on the first record (a worker whose processors never emit opens no
connection for it); its delivery reports are served by a thread of its own. A record that
cannot be stored within `message.timeout.ms` fails its batch's wait (OutputUnavailable): the
batch's emitting effects stay unmarked and the batch runs again after a backoff.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from confluent_kafka import KafkaException

from worker.kafka.clients import new_producer, without_consumer_settings
from worker.outputs import Deliveries, OutputRecord, OutputUnavailable

log = structlog.get_logger(__name__)

#: How long a record may wait for the broker before its batch runs again (message.timeout.ms).
DEFAULT_OUTPUT_TIMEOUT_S = 30.0
#: How long `produce` waits for room in a full local queue before giving up on the batch.
QUEUE_FULL_WAIT_S = 30.0


def output_config(config: Mapping[str, Any], timeout: float = DEFAULT_OUTPUT_TIMEOUT_S
                  ) -> dict[str, Any]:
    """The producer's properties: the connection's (consumer-only ones dropped), idempotence,
    acks=all, and the delivery bound."""
    conf = without_consumer_settings(config)
    conf.update({"enable.idempotence": True, "acks": "all",
                 "message.timeout.ms": max(1, int(timeout * 1000))})
    conf.setdefault("linger.ms", 5)
    return conf


class OutputProducer:
    def __init__(self, config: Mapping[str, Any], *, what: str = "output producer") -> None:
        self._config = dict(config)
        self._what = what
        self._producer: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def client(self) -> Any:
        """The confluent-kafka producer, made on first use."""
        producer = self._producer
        if producer is None:
            with self._lock:
                if self._producer is None:
                    self._producer = self._make()
                if self._poller is None:
                    self._poller = threading.Thread(target=self._poll, name="output-delivery",
                                                    daemon=True)
                    self._poller.start()
                producer = self._producer
        return producer

    def _make(self) -> Any:
        return new_producer(self._config, self._what)

    def produce(self, records: Sequence[OutputRecord], deliveries: Deliveries) -> None:
        producer = self.client
        deliveries.expect(len(records))
        report = _reporter(deliveries)
        for i, r in enumerate(records):
            deadline = time.monotonic() + QUEUE_FULL_WAIT_S
            while True:
                try:
                    producer.produce(r.topic, r.value, r.key, headers=r.headers,
                                     on_delivery=report)
                    break
                except BufferError:
                    if time.monotonic() >= deadline:
                        self._not_queued(deliveries, len(records) - i)
                        raise OutputUnavailable(
                            "the output producer's local queue stayed full") from None
                    time.sleep(0.005)  # the delivery thread makes room
                except KafkaException as exc:
                    self._not_queued(deliveries, len(records) - i)
                    raise OutputUnavailable(f"cannot produce to {r.topic!r}: {exc}") from None

    @staticmethod
    def _not_queued(deliveries: Deliveries, n: int) -> None:
        for _ in range(n):
            deliveries.report("not queued")

    def _poll(self) -> None:
        while not self._stop.is_set():
            producer = self._producer  # (replaced after a fatal error: worker.kafka.transactions)
            if producer is None:
                self._stop.wait(0.05)
            else:
                producer.poll(0.05)

    def close(self, timeout: float = 10.0) -> None:
        """Stop serving reports and wait (bounded) for what is in flight."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(2)
        if self._producer is not None:
            left = self._producer.flush(timeout)
            if left:
                log.warning("emitted records still unacknowledged at close", records=left)


def _reporter(deliveries: Deliveries) -> Callable[[Any, Any], None]:
    def report(err: Any, _msg: Any) -> None:
        deliveries.report(None if err is None else str(err))

    return report
