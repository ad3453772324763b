"""The consumer port (worker.engine.consumer_port) over confluent-kafka: the one place the engine's
wishes become librdkafka calls — assign vs incremental_assign, TopicPartition objects, error
codes (`_NO_OFFSET`, `_PARTITION_EOF`, `_ALL_BROKERS_DOWN`), commit callbacks, statistics."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import msgspec
import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as KTP

from worker.engine.consumer_port import ClientError, CommitFailed, ConsumerListener
from worker.errors import WorkerError
from worker.kafka.clients import new_consumer
from worker.kafka.config import interleaving_partitions
from worker.kafka.diagnose import classify
from worker.kafka.rdkafka_log import about_a_broker
from worker.kafka.secrets import redact, scrub, secret_values
from worker.types import TP

log = structlog.get_logger(__name__)

STATS_INTERVAL_MS = 5_000  # librdkafka statistics: the last stable offsets, and the metrics
FENCED_TEXT = "fenced by other consumer with same group.instance.id"
# KIP-848 (group.protocol=consumer): the broker keeps the member that holds the instance id and
# refuses the newcomer with UNRELEASED_INSTANCE_ID, which librdkafka reports as _FATAL.
UNRELEASED_TEXT = "instance ID is still used by another member"
DUPLICATE_INSTANCE_ID = "duplicate_instance_id"  # ClientError.kind of a fenced static member


class ConfluentConsumer:
    """Implements worker.engine.consumer_port.ConsumerPort."""

    def __init__(self, config: Mapping[str, Any],
                 stats: Callable[[str], None] | None = None) -> None:
        self._config = dict(config)
        self._stats = stats
        self._stable: dict[TP, tuple[int, int]] = {}
        self._config["stats_cb"] = self._on_stats
        self._config.setdefault("statistics.interval.ms", STATS_INTERVAL_MS)
        self._incremental = (self._config.get("group.protocol") == "consumer"
                             or "cooperative-sticky"
                             in str(self._config.get("partition.assignment.strategy", "")))
        self._secrets = secret_values(self._config)
        self._listener: ConsumerListener | None = None
        self._c: Any = None

    # -- lifecycle -------------------------------------------------------------------------
    def open(self, listener: ConsumerListener, *, interleave_partitions: bool = False) -> None:
        self._listener = listener
        if interleave_partitions:
            self._config = interleaving_partitions(self._config)
        self._c = new_consumer({**self._config, "on_commit": self._on_commit,
                                "error_cb": self._on_error})  # ConfigError: bad settings

    def settings(self) -> dict[str, Any]:
        return redact({k: v for k, v in self._config.items() if not callable(v)})

    def subscribe(self, topics: Sequence[str]) -> None:
        self._c.subscribe(list(topics), on_assign=self._on_assign, on_revoke=self._on_revoke,
                          on_lost=self._on_lost)

    def close(self) -> None:
        self._c.close()

    # -- reading ---------------------------------------------------------------------------
    def consume(self, n: int, timeout: float) -> list[Any]:
        return self._c.consume(n, timeout)  # type: ignore[no-any-return]

    def poll(self) -> Any | None:
        return self._c.poll(0)

    def message_error(self, message: Any) -> ClientError | None:
        err = message.error()
        if err is None:
            return None
        return self._client_error(err, end_of_partition=err.code() == KafkaError._PARTITION_EOF)

    def _client_error(self, err: Any, **fields: Any) -> ClientError:
        """librdkafka's error as the port's ClientError. A fatal error comes as one whose
        fatal() is set, or (on a message, or a commit) as code _FATAL; a static member fenced
        by another process with its group.instance.id is the operator's to fix."""
        code = err.code()
        fatal = bool(err.fatal()) or code == KafkaError._FATAL
        text = scrub(str(err), self._secrets)
        if code == KafkaError.FENCED_INSTANCE_ID or FENCED_TEXT in err.str():
            return ClientError(text, fatal=True, settings_problem=self._fenced_sentence(),
                               kind=DUPLICATE_INSTANCE_ID, **fields)
        if code == KafkaError.UNRELEASED_INSTANCE_ID or UNRELEASED_TEXT in err.str():
            return ClientError(text, fatal=True, settings_problem=self._fenced_sentence(
                "this worker's group instance id {instance!r} is still held by another "
                "consumer of group {group!r}, and the broker refused this one"),
                kind=DUPLICATE_INSTANCE_ID, **fields)
        return ClientError(text, fatal=fatal, **fields)

    def _fenced_sentence(self, what: str = "another consumer joined group {group!r} with this "
                         "worker's group instance id {instance!r}, and the broker fenced this "
                         "one") -> str:
        instance = self._config.get("group.instance.id")
        group = self._config.get("group.id")
        return (what.format(group=group, instance=instance) + ": two processes were started "
                "with the same --group-instance-id (WORKER_GROUP_INSTANCE_ID); give each worker "
                "its own (e.g. its pod or host name). This worker stops so the other keeps the "
                "partitions.")

    def pause(self, partitions: Collection[TP]) -> None:
        self._c.pause([KTP(t, p) for t, p in partitions])

    def resume(self, partitions: Collection[TP]) -> None:
        self._c.resume([KTP(t, p) for t, p in partitions])

    def seek(self, tp: TP, offset: int) -> None:
        try:
            self._c.seek(KTP(tp[0], tp[1], offset))
        except KafkaException as exc:
            raise RuntimeError(str(exc)) from None

    # -- offsets ---------------------------------------------------------------------------
    def store(self, offsets: Sequence[tuple[TP, int]]) -> None:
        self._c.store_offsets(offsets=[KTP(t, p, o) for (t, p), o in offsets])

    def commit(self, offsets: Sequence[tuple[TP, int]] | None = None, *,
               asynchronous: bool) -> list[tuple[TP, int]]:
        try:
            if offsets is None:
                result = self._c.commit(asynchronous=asynchronous)
            else:
                result = self._c.commit(offsets=[KTP(t, p, o) for (t, p), o in offsets],
                                        asynchronous=asynchronous)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if getattr(err, "code", lambda: None)() == KafkaError._NO_OFFSET:
                return []
            raise CommitFailed(str(exc)) from None
        if asynchronous:
            return []
        done = _offsets(result)
        if self._listener is not None:
            self._listener.on_commit(done, asynchronous=False)
        return done

    def committed(self, partitions: Collection[TP], timeout: float) -> dict[TP, int]:
        if not partitions:
            return {}
        try:
            got = self._c.committed([KTP(t, p) for t, p in partitions], timeout=timeout)
        except KafkaException as exc:
            raise CommitFailed(str(exc)) from None
        return {(tp.topic, tp.partition): int(tp.offset) for tp in got}

    def positions(self, partitions: Collection[TP]) -> dict[TP, int]:
        # librdkafka's app position: a message's offset + 1 when it is returned, a control
        # message's offset + 1 when consume() serves it (docs/engine.md)
        got = self._c.position([KTP(t, p) for t, p in partitions])
        return {(tp.topic, tp.partition): int(tp.offset) for tp in got}

    def stable_offsets(self, partitions: Collection[TP]) -> dict[TP, tuple[int, int]]:
        stable = self._stable
        return {tp: stable[tp] for tp in partitions if tp in stable}

    # -- metadata --------------------------------------------------------------------------
    def member_id(self) -> str:
        return str(self._c.memberid() or "")

    def group_metadata(self) -> Any:
        return self._c.consumer_group_metadata()

    def reachable(self, topic: str, timeout: float) -> bool:
        try:
            self._c.list_topics(topic, timeout=timeout)
        except KafkaException:
            return False
        return True

    def partitions_of(self, topics: Sequence[str]) -> list[TP]:
        out: list[TP] = []
        for topic in topics:
            md = self._c.list_topics(topic, timeout=10.0).topics.get(topic)
            if md is None or md.error is not None:
                raise WorkerError(f"topic {topic!r} does not exist or cannot be described "
                                  f"({getattr(md, 'error', None)}); create it first")
            out.extend((topic, p) for p in sorted(md.partitions))
        return out

    def watermarks(self, partitions: Collection[TP], *, cached: bool = False
                   ) -> dict[TP, tuple[int, int]]:
        out: dict[TP, tuple[int, int]] = {}
        for t, p in partitions:
            if cached:
                low, high = self._c.get_watermark_offsets(KTP(t, p), cached=True)
            else:
                low, high = self._c.get_watermark_offsets(KTP(t, p), timeout=10.0)
            out[(t, p)] = (int(low), int(high))
        return out

    # -- librdkafka's callbacks ------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        if self._incremental:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        assert self._listener is not None
        self._listener.on_assign([(tp.topic, tp.partition) for tp in partitions])

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # (confluent-kafka unassigns after the callback returns)
        assert self._listener is not None
        self._listener.on_revoke([(tp.topic, tp.partition) for tp in partitions])

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        assert self._listener is not None
        self._listener.on_lost([(tp.topic, tp.partition) for tp in partitions])

    def _on_commit(self, err: Any, partitions: Any) -> None:
        """librdkafka's offset_commit_cb: called once per asynchronous commit (a synchronous
        one reports through its own queue)."""
        listener = self._listener
        if listener is None:
            return
        if err is None:
            listener.on_commit(_offsets(partitions), asynchronous=True)
        elif err.code() == KafkaError._NO_OFFSET:
            listener.on_commit([], asynchronous=True)
        else:
            error = self._client_error(err)
            listener.on_commit_failed(error.text)
            if error.fatal:
                listener.on_error(error)  # e.g. fenced: retrying cannot help

    def _on_stats(self, stats_json: str) -> None:
        """librdkafka's statistics (on the polling thread): the last stable offset and high
        watermark of each partition, as its latest fetch saw them; then the metrics."""
        try:
            self._stable = fetched_ends(stats_json)
        except msgspec.DecodeError:
            log.debug("librdkafka statistics not understood")
        if self._stats is not None:
            self._stats(stats_json)

    def _on_error(self, err: Any) -> None:
        found = classify(err.name(), err.str(), self._config)
        problem = found if found is not None and found.is_settings_problem else None
        if (problem is None and not err.fatal() and err.code() == KafkaError._TRANSPORT
                and about_a_broker(err.str())):
            return  # one broker's connection: the log bridge writes it once per outage
        error = self._client_error(err)
        if error.fatal and self._listener is not None:
            self._listener.on_error(error)
            return
        if self._listener is not None:
            self._listener.on_error(ClientError(
                scrub(str(err), self._secrets), fatal=err.fatal(),
                all_brokers_down=err.code() == KafkaError._ALL_BROKERS_DOWN,
                settings_problem=problem.message if problem else None,
                kind=problem.kind if problem else None))


class _PartitionStats(msgspec.Struct):
    ls_offset: int = -1
    hi_offset: int = -1


class _TopicStats(msgspec.Struct):
    partitions: dict[int, _PartitionStats] = {}


class _Stats(msgspec.Struct):
    topics: dict[str, _TopicStats] = {}


_STATS = msgspec.json.Decoder(_Stats)


def fetched_ends(stats_json: str | bytes) -> dict[TP, tuple[int, int]]:
    """(last stable offset, high watermark) per partition from librdkafka's statistics, for the
    partitions a fetch answered (partition -1 is librdkafka's internal one)."""
    return {(topic, p): (s.ls_offset, s.hi_offset)
            for topic, t in _STATS.decode(stats_json).topics.items()
            for p, s in t.partitions.items() if p >= 0 and s.ls_offset >= 0 and s.hi_offset >= 0}


def _offsets(partitions: Any) -> list[tuple[TP, int]]:
    return [((tp.topic, tp.partition), tp.offset) for tp in partitions or ()
            if tp.error is None and tp.offset >= 0]
