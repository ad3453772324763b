"""Reading a dead-letter topic back: what is in it, and replaying its letters once the cause is
fixed (a producer bug, a processor bug, a store that was down).

A replay re-produces each letter's original key, value and headers (the worker's `worker.*`
error headers dropped, `worker.replayed_from` added) to its source topic (the
`worker.source.topic` header) or to `--to`, and commits its own consumer group's offsets on the
dead-letter topic only after every record of a batch is acknowledged: a replay that stops
half-way goes on where it stopped, and one that is run again replays nothing twice. Replaying an
event whose other processors already succeeded is safe: the ledger turns their keys into
duplicates, and only the processor that failed runs again.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from worker import tracing
from worker.errors import WorkerError
from worker.kafka.dead_letter_format import Header, HeaderList, Letter, letter_of


class ReplayError(WorkerError):
    """A letter could not be replayed; nothing past it was committed."""


@dataclass
class ReplaySummary:
    read: int = 0
    replayed: Counter[str] = field(default_factory=Counter)  # error class -> letters
    skipped: Counter[str] = field(default_factory=Counter)   # error class -> letters
    to_topics: Counter[str] = field(default_factory=Counter)
    #: shrunk letters whose original was read back from the source topic / was gone
    restored: int = 0
    gone: int = 0


def read_letters(config: Mapping[str, Any], dlq_topic: str,
                 on_batch: Callable[[list[Letter]], None], *, group: str | None = None,
                 commit: bool = True, batch_size: int = 500, timeout: float = 10.0) -> int:
    """Read `dlq_topic` up to the end offsets it had at the start, handing `on_batch` each batch
    in offset order per partition. With `group`, start at the group's committed offsets and
    (if `commit`) commit after each `on_batch` returns (it raises to stop without committing);
    without, read from the beginning and commit nothing. Returns the number of letters read."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from worker.kafka.admin import checked_metadata
    from worker.kafka.clients import new_consumer
    from worker.kafka.config import CONSUMER_ONLY_PREFIXES

    md = checked_metadata(config, timeout).topics.get(dlq_topic)
    if md is None or md.error is not None or not md.partitions:
        raise WorkerError(f"dead-letter topic {dlq_topic!r} does not exist")
    conf = {k: v for k, v in config.items() if not k.startswith(CONSUMER_ONLY_PREFIXES)}
    conf.update({"group.id": group or f"activity-worker-dlq-read-{uuid.uuid4().hex[:8]}",
                 "enable.auto.commit": False, "enable.auto.offset.store": False,
                 "auto.offset.reset": "earliest", "enable.partition.eof": False})
    consumer = new_consumer(conf, "dead-letter reader")
    try:
        tps = [TopicPartition(dlq_topic, p) for p in sorted(md.partitions)]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout)[1] for tp in tps}
        starts = consumer.committed(tps, timeout) if group else tps
        for tp in starts:
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
        consumer.assign(starts)
        todo = {tp.partition for tp in starts
                if ends[tp.partition] > 0
                and (tp.offset < 0 or tp.offset < ends[tp.partition])}
        read = 0
        idle_until = time.monotonic() + timeout
        while todo:
            msgs = consumer.consume(batch_size, 0.5)
            batch: list[Letter] = []
            last: dict[int, int] = {}
            for m in msgs:
                if m.error() is not None:
                    continue
                p, off = m.partition() or 0, m.offset() or 0
                if p not in todo or off >= ends[p]:
                    continue  # beyond the end at the start: a later replay's work
                batch.append(letter_of(m))
                last[p] = off
                if off >= ends[p] - 1:
                    todo.discard(p)
            if todo:  # past what is never handed over: markers of transactional letters
                for tp in consumer.position([TopicPartition(dlq_topic, p) for p in todo]):
                    if tp.offset >= ends[tp.partition]:
                        todo.discard(tp.partition)
            if not batch:
                if time.monotonic() > idle_until:
                    raise WorkerError(f"reading {dlq_topic!r} stalled before its end offsets "
                                      f"{ends}; is the broker up?")
                continue
            idle_until = time.monotonic() + timeout
            on_batch(batch)
            read += len(batch)
            if group and commit:
                consumer.commit(offsets=[TopicPartition(dlq_topic, p, o + 1)
                                         for p, o in last.items()], asynchronous=False)
        return read
    finally:
        consumer.close()


def replay(config: Mapping[str, Any], dlq_topic: str, *, group: str, to: str | None = None,
           error_classes: Collection[str] = (), processors: Collection[str] = (),
           dry_run: bool = False, timeout: float = 30.0) -> ReplaySummary:
    """Replay the letters of `dlq_topic` that match the filters (see the module docstring)."""
    from worker.kafka.clients import new_producer
    from worker.kafka.config import producer_config

    summary = ReplaySummary()
    pconf = producer_config(config)
    # An original read back for a shrunk letter may be as large as the source topic allows
    # (the broker still checks the target topic's own limit).
    pconf.setdefault("message.max.bytes", 100_000_000)
    producer = None if dry_run else new_producer(pconf, "replay producer")
    originals = _Originals(config, timeout)

    def wanted(letter: Letter) -> bool:
        return ((not error_classes or letter.error_class in error_classes)
                and (not processors or letter.processor in processors))

    def on_batch(batch: list[Letter]) -> None:
        failures: list[str] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(f"{msg.topic()}: {err}")

        for letter in batch:
            if not wanted(letter):
                summary.skipped[letter.error_class] += 1
                continue
            target = to or letter.source_topic
            if not target:
                raise ReplayError(f"{dlq_topic}[{letter.partition}]@{letter.offset} has no "
                                  "worker.source.topic header; give the topic with --to")
            record = letter.key, letter.value, letter.headers
            if letter.truncated:
                found = originals.read(letter)
                if found is None:
                    summary.gone += 1
                    summary.skipped[letter.error_class] += 1
                    continue
                summary.restored += 1
                record = found
            summary.replayed[letter.error_class] += 1
            summary.to_topics[target] += 1
            if producer is not None:
                key, value, original_headers = record
                headers = [*original_headers, (Header.REPLAYED_FROM, (
                    f"{dlq_topic}:{letter.partition}:{letter.offset}").encode())]
                if tracing.active():  # a span linked to the letter's; its context goes on
                    headers = tracing.replay_span(letter.headers, headers, target, dlq_topic)
                producer.produce(target, value=value, key=key, headers=headers,
                                 on_delivery=delivered)
                producer.poll(0)
        if producer is not None:
            left = producer.flush(timeout)
            if failures or left:
                raise ReplayError(
                    f"{len(failures) or left} replayed record(s) were not acknowledged "
                    f"({failures[0] if failures else 'timed out'}); nothing past them was "
                    "committed, so running the replay again goes on from there")

    try:
        summary.read = read_letters(config, dlq_topic, on_batch, group=group,
                                    commit=not dry_run)
    finally:
        originals.close()
    return summary


class _Originals:
    """Reads the original record of a shrunk letter from its source topic (one consumer,
    assigned partition by partition, made on first use)."""

    def __init__(self, config: Mapping[str, Any], timeout: float) -> None:
        self._config = config
        self._timeout = timeout
        self._consumer: Any = None

    def read(self, letter: Letter) -> tuple[bytes | None, bytes | None, HeaderList] | None:
        """(key, value, headers) of the original, or None when it is no longer retained (or
        what is at that offset is not it: the SHA-256 differs)."""
        import hashlib

        from confluent_kafka import TopicPartition

        from worker.kafka.clients import new_consumer
        from worker.kafka.config import CONSUMER_ONLY_PREFIXES

        if letter.source_partition is None or letter.source_offset is None:
            return None
        if self._consumer is None:
            conf = {k: v for k, v in self._config.items()
                    if not k.startswith(CONSUMER_ONLY_PREFIXES)}
            conf.update({"group.id": f"activity-worker-dlq-originals-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.auto.offset.store": False,
                         "auto.offset.reset": "error", "enable.partition.eof": True})
            self._consumer = new_consumer(conf, "source reader")
        tp = TopicPartition(letter.source_topic, letter.source_partition, letter.source_offset)
        low, high = self._consumer.get_watermark_offsets(tp, timeout=self._timeout)
        if not low <= letter.source_offset < high:
            return None
        self._consumer.assign([tp])
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            msg = self._consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None or msg.offset() != letter.source_offset:
                return None
            value = msg.value() or b""
            if hashlib.sha256(value).hexdigest() != letter.value_sha256:
                return None
            return msg.key(), msg.value(), list(msg.headers() or [])
        return None

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

