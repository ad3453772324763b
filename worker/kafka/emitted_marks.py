"""Exactly-once mode's done marks of emitting effects (worker.outputs.EmittedMarks), kept the way
Kafka Streams keeps a task's state: in a compacted changelog topic written inside the same
transaction as the records and the offsets, and restored from it when a partition is taken up.

- One changelog topic per input topic and group, `changelog_topic(group, topic)`, with at least
  the input's partition count; the mark of an effect of an event read from input partition p is
  a record on changelog partition p, keyed by the idempotency key (compaction keeps one per
  key).
- A partition's marks are restored on its first use after it was assigned: read from the
  beginning to the end under read_committed (an open transaction of a zombie holds the end until
  it is fenced or times out: the restore waits, bounded). Revoked or lost partitions are
  forgotten (`Forget`, an engine observer), so the next owner, or this worker when it gets the
  partition back, restores what the others wrote meanwhile.
- Marks made in the open transaction count at once (a batch run again inside its transaction
  sees them) and become committed marks when it commits; an abort drops them.

A duplicate is caught when it is read from the same partition as its first copy, which is
where a producer's retry or a replay with the same key puts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from worker.errors import ConfigError
from worker.kafka.admin import checked_metadata, ensure_topics
from worker.kafka.clients import new_consumer, without_consumer_settings
from worker.kafka.secrets import scrub, secret_values
from worker.ledger.base import DEFAULT_RETENTION_SECONDS
from worker.observer import WorkerObserver
from worker.outputs import OutputUnavailable
from worker.types import TP
from worker.types import TopicPartition as Partition

log = structlog.get_logger(__name__)

#: How long a restore may wait for a partition's changelog to be readable to its end (past an
#: open transaction of a zombie, which the broker aborts after transaction.timeout.ms).
RESTORE_TIMEOUT_S = 120.0
MARK = b"1"
#: How often the marks in memory are pruned (at a commit).
PRUNE_EVERY_S = 60.0


def changelog_topic(group: str, topic: str) -> str:
    return f"{group}.{topic}.emitted"


def ensure_changelogs(config: Mapping[str, Any], group: str, topics: Sequence[str],
                      retention: float = DEFAULT_RETENTION_SECONDS) -> None:
    """Create each input topic's changelog (compacted, and its segments deleted after
    `retention` seconds, as many partitions) unless it exists; ConfigError when one exists with
    fewer partitions than its input topic."""
    md = checked_metadata(config)
    wanted: dict[str, int] = {}
    for topic in topics:
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None:
            raise ConfigError(f"topic {topic!r} does not exist; create it first")
        wanted[changelog_topic(group, topic)] = len(meta.partitions)
    for name, partitions in wanted.items():
        have = md.topics.get(name)
        if have is not None and have.error is None and len(have.partitions) < partitions:
            raise ConfigError(f"the changelog topic {name!r} has {len(have.partitions)} "
                              f"partitions, fewer than its input's {partitions}: add partitions "
                              "to it (kafka-topics --alter) before running exactly-once")
    retention_ms = str(int(retention * 1000))
    ensure_topics(config, wanted, topic_config={
        n: {"cleanup.policy": "compact,delete", "retention.ms": retention_ms} for n in wanted})


class KafkaEmittedMarks:
    def __init__(self, config: Mapping[str, Any], group: str, *,
                 retention: float = DEFAULT_RETENTION_SECONDS,
                 restore_timeout: float = RESTORE_TIMEOUT_S,
                 clock: Callable[[], float] = time.time) -> None:
        """`config`: the connection's properties (the consumer's; consumer-only ones are
        replaced). `retention`: how long a mark counts (the ledger's --ledger-retention), after
        which it is dropped from memory, and from the changelog with its segment."""
        self._config = config
        self._group = group
        self._retention = retention
        self._restore_timeout = restore_timeout
        self._clock = clock
        self._next_prune = clock() + PRUNE_EVERY_S
        # restored partitions -> committed marks (key -> when it was made, epoch seconds)
        self._marks: dict[TP, dict[str, float]] = {}
        self._pending: list[tuple[TP, str]] = []  # marked in the open transaction
        self._pending_keys: set[tuple[TP, str]] = set()
        self.producer: Any = None                 # the transactional producer's client
        self.restored = 0

    # -- the pipeline's side (worker.outputs.EmittedMarks) ------------------------------------
    def emitted(self, partition: TP, key: str) -> bool:
        marks = self._marks.get(partition)
        if marks is None:
            marks = self._marks[partition] = self._restore(partition)
        made = marks.get(key)
        if made is not None and made >= self._clock() - self._retention:
            return True
        return (partition, key) in self._pending_keys

    def mark(self, marks: Sequence[tuple[TP, str]]) -> None:
        producer = self.producer
        assert producer is not None, "marks are made inside a transaction"
        for (topic, partition), key in marks:
            producer.produce(changelog_topic(self._group, topic), MARK, key.encode(),
                             partition=partition)
            self._pending.append(((topic, partition), key))
            self._pending_keys.add(((topic, partition), key))

    # -- the transaction's end -----------------------------------------------------------------
    def committed(self) -> None:
        now = self._clock()
        for tp, key in self._pending:
            marks = self._marks.get(tp)
            if marks is not None:
                marks[key] = now
        self._pending, self._pending_keys = [], set()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_S
            self.prune(now)

    def prune(self, now: float) -> int:
        """Drop the marks older than the retention from memory; returns how many."""
        oldest, dropped = now - self._retention, 0
        for marks in self._marks.values():
            old = [k for k, made in marks.items() if made < oldest]
            for k in old:
                del marks[k]
            dropped += len(old)
        if dropped:
            log.info("emitted marks pruned", marks=dropped)
        return dropped

    def aborted(self) -> None:
        self._pending, self._pending_keys = [], set()

    def forget(self, partitions: Sequence[TP]) -> None:
        for tp in partitions:
            self._marks.pop(tp, None)

    # -- restore ---------------------------------------------------------------------------------
    def _restore(self, partition: TP) -> dict[str, float]:
        topic = changelog_topic(self._group, partition[0])
        conf = without_consumer_settings(self._config)
        conf.update({"group.id": f"{self._group}.restore", "enable.auto.commit": False,
                     "isolation.level": "read_committed", "enable.partition.eof": False})
        consumer = new_consumer(conf, "changelog consumer")
        started = time.monotonic()
        marks: dict[str, float] = {}
        oldest = self._clock() - self._retention
        try:
            tp = TopicPartition(topic, partition[1])
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            tp.offset = OFFSET_BEGINNING
            consumer.assign([tp])
            deadline = started + self._restore_timeout
            while high > 0 and _position(consumer, topic, partition[1]) < high:
                if time.monotonic() > deadline:
                    raise OutputUnavailable(
                        f"the changelog {topic}[{partition[1]}] was not readable to its end "
                        f"({high}) within {self._restore_timeout:g} s (an open transaction?)")
                for msg in consumer.consume(10_000, 0.2):
                    err = msg.error()
                    if err is None:
                        made = msg.timestamp()[1] / 1000
                        if made >= oldest:
                            marks[msg.key().decode()] = made
                    elif err.code() != KafkaError._PARTITION_EOF:
                        raise OutputUnavailable(f"restoring {topic}: {err.str()}")
        except OutputUnavailable:
            raise
        except Exception as exc:  # the client's errors: the batch is read again, later
            text = scrub(str(exc), secret_values(self._config))
            raise OutputUnavailable(f"restoring {topic}: {text}") from None
        finally:
            consumer.close()
        self.restored += 1
        log.info("emitted marks restored", partition=f"{partition[0]}[{partition[1]}]",
                 changelog=topic, marks=len(marks),
                 seconds=round(time.monotonic() - started, 3))
        return marks


def _position(consumer: Any, topic: str, partition: int) -> int:
    offset = consumer.position([TopicPartition(topic, partition)])[0].offset
    return int(offset) if offset >= 0 else -1


class Forget(WorkerObserver):
    """Drops the marks of partitions that are revoked or lost (an engine observer)."""

    def __init__(self, marks: KafkaEmittedMarks) -> None:
        self._marks = marks

    def partitions_revoked(self, tps: Sequence[Partition]) -> None:
        self._marks.forget([(tp.topic, tp.partition) for tp in tps])

    def partitions_lost(self, tps: Sequence[Partition]) -> None:
        self._marks.forget([(tp.topic, tp.partition) for tp in tps])
